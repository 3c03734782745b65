"""Are the features any good? Class separability and odd uploads. No Dagster, no Spark: plain
numpy over vectors, tested on points of known geometry."""
