"""Every default and limit pushbuild uses, in one place, each with its unit in the name."""

# --- receiving -------------------------------------------------------------
#: GitHub and GitLab send payloads up to 25 MB (see shared FORGES.md).
MAX_BODY_BYTES = 25 * 1024 * 1024
#: Bodies of everything but the forges' deliveries (the API's JSON): anything larger is 413.
MAX_API_BODY_BYTES = 64 * 1024
#: Request body bytes one web process holds at once (bodies are read whole before the app sees
#: them, and before any signature is checked): ten deliveries of the largest size. Past it, 503.
MAX_BUFFERED_BYTES = 10 * MAX_BODY_BYTES
#: Standard Webhooks: reject signatures whose timestamp is further off than this.
SIGNATURE_TOLERANCE_S = 5 * 60
#: A webhook-timestamp with more digits than this is no Unix time of this era (and int() refuses
#: more than 4300 digits with a ValueError).
MAX_TIMESTAMP_DIGITS = 12
#: A delivery id header (X-GitHub-Delivery, Idempotency-Key, webhook-id, ...) longer than this is
#: refused. Forges send UUIDs and numbers; two ids joined, with the forge and a repository name,
#: stay within the store's 512-character delivery key.
MAX_DELIVERY_ID_CHARS = 100
#: Payload fields longer than these are refused; each fits its column in the store.
MAX_REPO_NAME_CHARS = 255
MAX_REF_CHARS = 1024
MAX_PUSHER_CHARS = 256
#: The largest id or log cursor the store holds: ids are INTEGER columns, 32-bit on PostgreSQL
#: (NumericValueOutOfRange beyond) and 64-bit on SQLite (OverflowError beyond), so the API refuses
#: larger ones before they reach a query.
MAX_DATABASE_ID = 2**31 - 1

# --- state -----------------------------------------------------------------
DATA_DIR = ".pushbuild"
#: Bare mirrors live on tmpfs: they are a cache that a reboot may drop.
MIRROR_DIR = "/dev/shm/pushbuild/mirrors"
#: Mirrors beyond this many bytes in all are evicted, least recently used first (tmpfs is memory).
MIRROR_BUDGET_BYTES = 2 * 1024 * 1024 * 1024
STATE_DB_NAME = "state.sqlite"
BROKER_DB_NAME = "broker.sqlite"
#: SQLite waits this long for a lock held by another process before failing.
SQLITE_BUSY_TIMEOUT_MS = 15_000

#: Telling the newer of two pushes to a branch looks at this many of its latest builds.
ORDERING_WINDOW = 200

# --- retention and disk (docs/operations.md: Retention and disk) -----------------------
#: A finished build (record, log, deliveries and their attempts) is pruned once it is older than
#: this, or beyond the newest KEEP_BUILDS of its repository; never the newest build of a ref.
RETENTION_DAYS = 90
KEEP_BUILDS = 100
#: A pruned build's delivery and push keys are remembered this long after the push was accepted,
#: so a replayed old delivery is still answered "duplicate" (a year: four times the retention).
REPLAY_MEMORY_DAYS = 365
#: How often each worker prunes records and cleans its engine (and first, this long after it starts).
HOUSEKEEPING_EVERY_S = 3600.0
HOUSEKEEPING_FIRST_S = 60.0
#: Builds deleted per transaction, and log chunks deleted per transaction before that.
PRUNE_BATCH_BUILDS = 200
PRUNE_LOG_ROWS = 200
#: A build finished less recently than this is never pruned: its statuses and hooks are still
#: being recorded, and a cancelled one's worker may still be stopping.
PRUNE_MIN_AGE_S = 3600.0
#: A web process answers a replay of a push it accepted within this long from memory (webhook.recent_pushes);
#: well within PRUNE_MIN_AGE_S, so what it remembers is always still recorded.
RECENT_PUSHES_S = 600.0
#: How many deliveries and pushes it remembers so.
RECENT_PUSHES = 8192
#: A build chosen for pruning by a worker that died before deleting it is finished by another after this.
PRUNE_STALE_CLAIM_S = 3600.0
#: BuildKit's build cache not used by any image is cut to this size, least recently used first.
MAX_BUILD_CACHE_BYTES = 10 * 1024 * 1024 * 1024
#: pushbuild's own images on the engine kept per repository besides the protected ones (the newest
#: image of each branch, images a cache_from names, images of builds not finished).
KEEP_IMAGES = 10

# --- serving ---------------------------------------------------------------
BIND = "127.0.0.1:8080"
#: gunicorn processes. One by default: on SQLite, processes only contend for the write lock
#: (measured with bench/load.py: p99 0.25 s with one process, 1 s with two); raise it
#: (WEB_CONCURRENCY) when state and queue are on PostgreSQL and Redis.
WEB_WORKERS = 1
#: A health check (state store, broker, engine) still running after this long counts as unhealthy.
HEALTH_TIMEOUT_S = 1.5
#: /healthz answers a result this recent again instead of checking anew.
HEALTH_CACHE_S = 2.0
#: Each process adds what it counted for /metrics to the database this often (webhook/metrics.py):
#: one write per interval, however many deliveries and builds it counted.
METRICS_FLUSH_S = 2.0
#: A refused delivery naming a configured repository is noted as its last delivery at most this
#: often per repository and process, so a flood of them costs no database write each.
REFUSED_NOTE_EVERY_S = 1.0
#: A refused delivery's body is searched this far for a configured repository's name (it is never parsed).
REFUSED_SCAN_BYTES = 1024 * 1024

#: Connections one web process holds at once (webhook.web.serving.Worker: a greenlet each, not a
#: thread): 1,000 clients sending slowly, or idle, plus real traffic fit. Beyond it, connections
#: wait in the listen queue. The process's open-files limit is raised to fit (up to its hard limit).
WEB_WORKER_CONNECTIONS = 4096
#: A request's head must arrive within this long of its connection being accepted, and its body
#: within this long of its head; otherwise it is answered 408 and the connection is closed. The
#: forges give up on us after 10 s; we give a client no longer to send.
REQUEST_TIMEOUT_S = 10.0
#: How processes log: "text" (readable) or "json" (one object a line).
LOG_FORMAT = "text"
#: Log followers one web process serves at once; more are answered 429. A follower costs a
#: greenlet and a socket, not a thread, so it never takes what deliveries need; what is left to
#: bound is the store: each polls it twice every half second.
MAX_LOG_FOLLOWERS = 32

# --- building --------------------------------------------------------------
#: Build threads per worker process.
WORKER_CONCURRENCY = 2
#: How often an idle worker asks a SQL broker other than the embedded SQLite file (PostgreSQL)
#: for a build: the longest a build waits for an idle worker there (kombu's own default is a
#: second). The SQLite file is watched instead (webhook.broker); Redis blocks.
BROKER_POLL_S = 0.05
#: A running build whose lease was not renewed for this long is taken as lost.
LEASE_S = 60.0
#: The worker renews the leases of its running builds this often.
HEARTBEAT_S = 10.0
#: How often the worker looks for lost builds (expired leases, undispatched records).
RECONCILE_EVERY_S = 15.0
#: A queued build not started after this long is dispatched again (its message may be lost).
REDISPATCH_AFTER_S = 120.0
#: A build waiting for its repository's concurrency limit is offered again after this long.
CONCURRENCY_RETRY_S = 5.0
#: A build lost this many times (worker died each time) is failed instead of retried.
MAX_ATTEMPTS = 3
#: Commits are fetched this deep; 1 is enough to build a tree.
FETCH_DEPTH = 1
GIT_TIMEOUT_S = 300.0
#: `git ls-remote` for a manual build runs in a web request: a forge that does not answer in this
#: long is a 502, well inside a proxy's read timeout (deploy/nginx.conf: 30 s).
WEB_GIT_TIMEOUT_S = 20.0
#: docker-py read timeout for engine calls; builds stream, so this bounds silence, not length.
ENGINE_TIMEOUT_S = 600.0
#: A file in the build context larger than this fails the build (a repository bomb, or a mistake).
MAX_CONTEXT_FILE_BYTES = 2 * 1024 * 1024 * 1024
#: File data the engine receives for one build, in all (after .dockerignore). Git compresses and
#: deduplicates: a push of under 1 MB of objects once wrote 1.58 GB into the engine. 4 GiB is far
#: above any real context (twice the largest file allowed) and bounds what one push costs the
#: engine's disk; lower it to what your repositories need.
MAX_CONTEXT_BYTES = 4 * 1024 * 1024 * 1024
#: Entries (files, directories, links) the engine receives for one build. The largest monorepos
#: hold well under a million files; each entry costs the worker a tar header and a .dockerignore
#: match, and the engine an inode.
MAX_CONTEXT_ENTRIES = 1_000_000
#: The Dockerfile and .dockerignore are read into the worker's memory; a larger one fails the build.
MAX_BUILD_FILE_BYTES = 1024 * 1024
#: Every path of the context is matched against every .dockerignore pattern, so their number
#: bounds the worker's CPU per path (about 0.1 ms at 500). Real files have tens of lines.
MAX_DOCKERIGNORE_PATTERNS = 500
#: Links followed while resolving one path, as the Linux kernel allows (MAXSYMLINKS); more is a loop.
MAX_LINK_FOLLOWS = 40
#: Path components examined in all while resolving the context's links through each other: a few a
#: link in real trees (100,000 links of pnpm's layout take 500,000). Bounds crafted chains of long
#: targets to a few seconds of the worker's CPU.
MAX_LINK_RESOLUTION_STEPS = 10_000_000
#: A build's stored log keeps its first and last halves of this much text; the middle is cut.
MAX_LOG_BYTES = 10 * 1024 * 1024
#: Log lines are written together, at most this often, or sooner when this much text is waiting.
LOG_FLUSH_S = 0.25
LOG_FLUSH_CHARS = 64 * 1024
#: One page of GET /api/builds/<id>/log holds about this much text (``?limit=`` up to the maximum).
LOG_PAGE_CHARS = 1024 * 1024
MAX_LOG_PAGE_CHARS = 8 * 1024 * 1024
#: Chunk size for streaming the build context to the engine.
CONTEXT_CHUNK_BYTES = 64 * 1024
#: A build running longer than this is stopped and fails.
BUILD_TIMEOUT_S = 3600.0
#: Memory of each classic-builder step container (no swap beyond it).
BUILD_MEMORY_BYTES = 4 * 1024 * 1024 * 1024
#: A build whose engine went away (restarted) is built again, this many times in all.
ENGINE_ATTEMPTS = 3
#: How long to wait for a restarted engine to answer again before failing the build.
ENGINE_WAIT_S = 120.0
#: A push failing for a temporary reason (registry unreachable, 5xx, timeout) is tried this often.
PUSH_ATTEMPTS = 4
#: The first push retry waits this long, each further one twice as long (with jitter), up to the maximum.
PUSH_RETRY_S = 5.0
PUSH_RETRY_MAX_S = 120.0

# --- after the push --------------------------------------------------------
#: The name commit statuses appear under on the forge.
STATUS_CONTEXT = "pushbuild"
#: A status or hook delivery is tried this many times before it is given up as failed.
DELIVERY_ATTEMPTS = 8
#: The first retry waits this long; each further one twice as long (with jitter), up to the maximum.
DELIVERY_RETRY_S = 5.0
DELIVERY_RETRY_MAX_S = 600.0
#: Longest a status call or redeploy hook may take.
HOOK_TIMEOUT_S = 10.0
#: How often a worker looks for statuses and hooks that are due.
DELIVERY_POLL_S = 1.0

#: The docker CLI used by the BuildKit builder; it must be able to run `docker build` with BuildKit.
DOCKER_CLI = "docker"
DOCKERFILE = "Dockerfile"
CONTEXT = "."
