from contextlib import contextmanager

from dagster import Backoff, Failure, Jitter, RetryPolicy

from fruit_assets.errors import is_transient, user_facing_message

# For the steps that stage their output under _staging/<run>/ and commit it at the end (or write
# one object at a time): a second attempt recomputes and replaces, it never adds to the first.
# Taken when a transient fault outlasted boto's own retries (a throttled bucket for a minute and
# more), and for failures that are no user-facing error (a crashed worker may not crash again);
# configuration errors fail at once (allow_retries=False below). 10 s, then 30 s, ±10 s of jitter
# so the runs that a throttled bucket failed together do not come back together.
RERUN_POLICY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


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
        # A transient fault may pass: the step's RetryPolicy runs it again. Anything else fails the
        # same way with the same configuration: no retry. `from None` drops Spark's trace.
        raise Failure(description=message, allow_retries=is_transient(error)) from None
