"""The embedding model as an artefact: built (Keras -> ONNX) once per weights, kept in a registry
under the data root, baked into container images, and held to one parity rule. No Dagster, no Spark."""
