"""Every cap the app puts on what a visitor can send or start, in one place (the README lists them).

Why: the app is meant to run as a public Space on 2 CPU cores. Each cap below answers an input
that was measured to exhaust the machine (a thin 239-byte PNG, a zip of zeros, an 18,000-character
PGD target, a flood of queued jobs) and is checked before any expensive work starts.
"""

from __future__ import annotations

from core.data.folder import MAX_IMAGE_BYTES, MAX_IMAGES, MAX_PIXELS

MB = 2**20

# ---------------------------------------------------------------- images
IMAGE_BYTES = MAX_IMAGE_BYTES  # 20 MB per uploaded picture
IMAGE_PIXELS = MAX_PIXELS  # 4096 x 4096 in all, read from the header before any pixel is decoded
IMAGE_ASPECT = 20  # longest side / shortest side: thinner strips are not photos
PHOTOS = MAX_IMAGES  # photos of one person for "Forget someone"
KEPT_PGD = 32  # PGD images a session keeps for its next fit's recall set (each a picture held in memory)
KEEP_PEOPLE = 20  # people to keep given with "Forget someone" (each up to PHOTOS photos)

# ---------------------------------------------------------------- text
QUESTION_CHARS = 2000
TARGET_CHARS = 300  # a PGD target answer: every PGD step runs the model over it
TARGET_TOKENS = 64
ANSWER_TOKENS = 40  # what the playground generates; the question must leave room for it

# ---------------------------------------------------------------- jobs
PGD_STEPS = 500
ATTACK_STEPS = 200
ATTACK_EPS = 64  # the adaptive attack's largest budget, in 1/255 (the CLI's budget curve goes to 64)
ATTACK_PEOPLE = 20
HARDEN_ROUNDS = 3  # adversarial gate fitting in the Null space view: each round one PGD run per forget person
HARDEN_STEPS = 40  # PGD steps of a hardening round (the CLI's)
EVAL_ROWS = 1000
JOB_SECONDS = 600  # any long job (fit, evaluation, attacks, PGD, activation collection) stops after this
HEAVY_JOBS = 1  # long jobs running at once: they use both cores each
LIGHT_JOBS = 2  # one-answer handlers (compare, heatmap, examples) running at once
QUEUE_SIZE = 32  # requests waiting beyond that are refused with "the queue is full"

# ---------------------------------------------------------------- files
UPLOAD_BYTES = 200 * MB  # Gradio's max_file_size: refused while uploading, before any handler runs
ERASER_ZIP = 200 * MB
ERASER_UNZIPPED = 400 * MB  # an eraser's files, uncompressed (a 7B eraser with diagnostics is ~10 MB)
ERASER_ENTRIES = 4  # config, weights, tuning report, fit state
PARQUET_BYTES = 200 * MB  # per uploaded MLLMU file
PARQUET_FILES = 8
PARQUET_ROWS = 1000  # rows per uploaded MLLMU file (MLLMU-Bench's largest split, retain_95, has 475)
PARQUET_UNCOMPRESSED = 1024 * MB  # per file, read off its footer: a few KB repeating one picture decoded to 722 MB
TEMP_SECONDS = 3600  # uploads and downloads older than this are deleted (checked as often)

# ---------------------------------------------------------------- memory
UMAP_POINTS = 2000  # the UMAP view fits a seeded sample of the activations (PCA shows them all)
CACHED_SETS = 4  # activation sets kept for the map and the refit (the toy world's, then recent uploads)
LOADED_MODELS = 2  # models besides the default kept loaded, shared by every session that asks for them
