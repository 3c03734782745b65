from dagster import DynamicPartitionsDefinition

# One partition per folder under <root>/Training/; names as in Fruits-360 ("Apple Red 1").
fruit_class_partitions = DynamicPartitionsDefinition(name="fruit_class")
