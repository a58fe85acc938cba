"""What podcheck knows about the pod's programs: GPUs, memory, caches, ComfyUI, rclone, trainings, users."""
