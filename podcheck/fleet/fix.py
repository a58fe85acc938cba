"""placeholder"""
DEFAULT_MAX_PARALLEL = 4
