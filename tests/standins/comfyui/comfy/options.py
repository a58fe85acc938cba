"""As in ComfyUI: cli_args parses sys.argv only when the entry point turned parsing on."""
args_parsing = False


def enable_args_parsing(enable=True):
    global args_parsing
    args_parsing = enable
