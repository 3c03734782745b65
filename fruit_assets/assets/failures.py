from contextlib import contextmanager

from dagster import Failure

from fruit_assets.errors import user_facing_message


@contextmanager
def reported_as_one_line():
    """A user-facing error (bad configuration, unreachable storage, missing weights), even one
    raised inside a Spark task, fails the step with its one-line message as the description;
    anything else is a bug and keeps its stack trace."""
    try:
        yield
    except Failure:
        raise
    except Exception as error:
        message = user_facing_message(error)
        if message is None:
            raise
        # No retry: the same configuration fails the same way; `from None` drops Spark's trace.
        raise Failure(description=message, allow_retries=False) from None
