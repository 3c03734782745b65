from dagster import DagsterInstance, DynamicPartitionsDefinition

# One partition per folder under <root>/Training/; names as in Fruits-360 ("Apple Red 1").
FRUIT_CLASS_PARTITIONS = "fruit_class"
fruit_class_partitions = DynamicPartitionsDefinition(name=FRUIT_CLASS_PARTITIONS)


def registered_classes(instance: DagsterInstance) -> list[str]:
    """Every class registered as a partition, in the instance's order (one query, not one per
    class: #16750)."""
    return list(instance.get_dynamic_partitions(FRUIT_CLASS_PARTITIONS))
