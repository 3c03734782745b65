"""Each asset's step as a plain function of (Spark session, data layout). No Dagster.

The Dagster layer (assets/, sensors.py) calls these and nothing below them; tests and benchmarks
call exactly what the assets call. Steps that write stage under ``_staging/<run_token>/`` and
commit class folders at the end, so an output folder holds one complete version whatever happens.
"""
