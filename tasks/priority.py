"""Task priorities: higher runs first (PriorityRedisHuey and SqliteHuey both dequeue by
priority, then in enqueue order).

Workers take the highest-priority task waiting, so a burst of scheduled work never delays
what a person is waiting for. A running task is never preempted; priorities only order what
waits. Retries keep the priority their task was enqueued with.
"""

from __future__ import annotations

# Housekeeping that keeps other work moving (the lease sweeper re-enqueueing stalled jobs).
MAINTENANCE = 200
# Work a person started and is watching: a sync or import started by an RPC, a Strava code
# exchange. The default for tasks.
USER = 100
# Work nobody is waiting for: periodic incremental syncs, token refresh, reconcile. The
# default for periodic tasks.
SCHEDULED = 0
