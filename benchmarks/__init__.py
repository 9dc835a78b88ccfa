"""lean_bench: latency, memory and mAP on the host and on Android phones over adb (CLI `lean-bench`)."""
