"""ComfyUI's command-line options, declared as ComfyUI 0.3.6x declares them (names, types, defaults,
nargs/const and the mutually exclusive groups; see shared/facts/domain.md section 1.1), so the
stand-in accepts and refuses exactly what ComfyUI does, abbreviations included (argparse allow_abbrev)."""
import argparse
import os

import comfy.options


def is_valid_directory(path):
    """ComfyUI's check for --user-directory: an existing, readable folder."""
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"You do not have read permissions for '{path}'.")
    return path


parser = argparse.ArgumentParser()

# network
parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::",
                    help="comma-separated addresses to listen on; alone: all IPv4 and IPv6")
parser.add_argument("--port", type=int, default=8188, help="listen port")
parser.add_argument("--tls-keyfile", type=str, help="TLS key file")
parser.add_argument("--tls-certfile", type=str, help="TLS certificate file")
parser.add_argument("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*",
                    help="allow cross-origin requests")
parser.add_argument("--max-upload-size", type=float, default=100, help="upload limit in MB")

# folders
parser.add_argument("--base-directory", type=str, default=None, help="base for models, custom_nodes, input, output, temp, user")
parser.add_argument("--extra-model-paths-config", type=str, default=None, metavar="PATH", nargs="+", action="append",
                    help="extra_model_paths.yaml files")
parser.add_argument("--output-directory", type=str, default=None, help="output folder (overrides --base-directory)")
parser.add_argument("--temp-directory", type=str, default=None, help="temp folder parent (overrides --base-directory)")
parser.add_argument("--input-directory", type=str, default=None, help="input folder (overrides --base-directory)")
parser.add_argument("--models-directory", type=str, default=None, help="models folder (overrides --base-directory)")
parser.add_argument("--auto-launch", action="store_true", help="open a browser")
parser.add_argument("--disable-auto-launch", action="store_true", help="do not open a browser")

# devices and precision
parser.add_argument("--cuda-device", type=int, default=None, metavar="DEVICE_ID", help="cuda device to use")
cm_group = parser.add_mutually_exclusive_group()
cm_group.add_argument("--cuda-malloc", action="store_true", help="use cudaMallocAsync")
cm_group.add_argument("--disable-cuda-malloc", action="store_true", help="do not use cudaMallocAsync")

fp_group = parser.add_mutually_exclusive_group()
fp_group.add_argument("--force-fp32", action="store_true", help="force fp32")
fp_group.add_argument("--force-fp16", action="store_true", help="force fp16")

fpunet_group = parser.add_mutually_exclusive_group()
fpunet_group.add_argument("--fp32-unet", action="store_true", help="diffusion model in fp32")
fpunet_group.add_argument("--fp64-unet", action="store_true", help="diffusion model in fp64")
fpunet_group.add_argument("--bf16-unet", action="store_true", help="diffusion model in bf16")
fpunet_group.add_argument("--fp16-unet", action="store_true", help="diffusion model in fp16")
fpunet_group.add_argument("--fp8_e4m3fn-unet", action="store_true", help="unet weights in fp8_e4m3fn")
fpunet_group.add_argument("--fp8_e5m2-unet", action="store_true", help="unet weights in fp8_e5m2")
fpunet_group.add_argument("--fp8_e8m0fnu-unet", action="store_true", help="unet weights in fp8_e8m0fnu")

fpvae_group = parser.add_mutually_exclusive_group()
fpvae_group.add_argument("--fp16-vae", action="store_true", help="VAE in fp16")
fpvae_group.add_argument("--fp32-vae", action="store_true", help="VAE in fp32")
fpvae_group.add_argument("--bf16-vae", action="store_true", help="VAE in bf16")
parser.add_argument("--cpu-vae", action="store_true", help="VAE on the CPU")

fpte_group = parser.add_mutually_exclusive_group()
fpte_group.add_argument("--fp8_e4m3fn-text-enc", action="store_true", help="text encoder in fp8 (e4m3fn)")
fpte_group.add_argument("--fp8_e5m2-text-enc", action="store_true", help="text encoder in fp8 (e5m2)")
fpte_group.add_argument("--fp16-text-enc", action="store_true", help="text encoder in fp16")
fpte_group.add_argument("--fp32-text-enc", action="store_true", help="text encoder in fp32")
fpte_group.add_argument("--bf16-text-enc", action="store_true", help="text encoder in bf16")

parser.add_argument("--force-channels-last", action="store_true", help="channels-last tensors")
parser.add_argument("--directml", type=int, nargs="?", metavar="DIRECTML_DEVICE", const=-1, help="torch-directml")
parser.add_argument("--oneapi-device-selector", type=str, default=None, metavar="SELECTOR_STRING", help="oneAPI devices")
parser.add_argument("--disable-ipex-optimize", action="store_true", help="no ipex.optimize")
parser.add_argument("--supports-fp8-compute", action="store_true", help="act as if fp8 compute works")
parser.add_argument("--preview-method", type=str, default="none", choices=["none", "auto", "latent2rgb", "taesd"],
                    help="sampler preview method")
parser.add_argument("--preview-size", type=int, default=512, help="largest preview size")

cache_group = parser.add_mutually_exclusive_group()
cache_group.add_argument("--cache-classic", action="store_true", help="old style caching")
cache_group.add_argument("--cache-lru", type=int, default=0, help="LRU cache of N node results")
cache_group.add_argument("--cache-none", action="store_true", help="no caching")

# attention: one choice at most; ComfyUI refuses two (argparse exit 2)
attn_group = parser.add_mutually_exclusive_group()
attn_group.add_argument("--use-split-cross-attention", action="store_true", help="split cross attention")
attn_group.add_argument("--use-quad-cross-attention", action="store_true", help="sub-quadratic cross attention")
attn_group.add_argument("--use-pytorch-cross-attention", action="store_true", help="pytorch 2 attention")
attn_group.add_argument("--use-sage-attention", action="store_true", help="sage attention")
attn_group.add_argument("--use-flash-attention", action="store_true", help="FlashAttention")

parser.add_argument("--disable-xformers", action="store_true", help="no xformers")
upcast = parser.add_mutually_exclusive_group()
upcast.add_argument("--force-upcast-attention", action="store_true", help="always upcast attention")
upcast.add_argument("--dont-upcast-attention", action="store_true", help="never upcast attention")

vram_group = parser.add_mutually_exclusive_group()
vram_group.add_argument("--gpu-only", action="store_true", help="everything on the GPU")
vram_group.add_argument("--highvram", action="store_true", help="keep models in GPU memory")
vram_group.add_argument("--normalvram", action="store_true", help="normal VRAM use")
vram_group.add_argument("--lowvram", action="store_true", help="split the unet to use less VRAM")
vram_group.add_argument("--novram", action="store_true", help="when lowvram is not enough")
vram_group.add_argument("--cpu", action="store_true", help="everything on the CPU (slow)")

parser.add_argument("--reserve-vram", type=float, default=None, help="GB of VRAM to leave free")
parser.add_argument("--async-offload", action="store_true", help="async weight offloading")
parser.add_argument("--default-hashing-function", type=str, choices=["md5", "sha1", "sha256", "sha512"],
                    default="sha256", help="hash for duplicate detection")
parser.add_argument("--disable-smart-memory", action="store_true", help="offload to RAM eagerly")
parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
parser.add_argument("--fast", nargs="*", type=str, help="untested optimizations")
parser.add_argument("--mmap-torch-files", action="store_true", help="mmap ckpt/pt files")
parser.add_argument("--disable-mmap", action="store_true", help="no mmap for safetensors")

# runtime behaviour
parser.add_argument("--dont-print-server", action="store_true", help="quiet server")
parser.add_argument("--quick-test-for-ci", action="store_true", help="exit after start-up")
parser.add_argument("--windows-standalone-build", action="store_true", help="Windows standalone conveniences")
parser.add_argument("--disable-metadata", action="store_true", help="no prompt metadata in files")
parser.add_argument("--disable-all-custom-nodes", action="store_true", help="load no custom nodes")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[], help="custom nodes to load anyway")
parser.add_argument("--disable-api-nodes", action="store_true", help="load no API nodes")
parser.add_argument("--multi-user", action="store_true", help="per-user storage")
parser.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?",
                    choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="logging level")
parser.add_argument("--log-stdout", action="store_true", help="log to stdout instead of stderr")
parser.add_argument("--front-end-version", type=str, default="comfyanonymous/ComfyUI@latest", help="frontend version")
parser.add_argument("--front-end-root", type=is_valid_directory, default=None, help="local frontend folder")
parser.add_argument("--user-directory", type=is_valid_directory, default=None, help="user folder (absolute)")
parser.add_argument("--enable-compress-response-body", action="store_true", help="compress responses")
parser.add_argument("--comfy-api-base", type=str, default="https://api.comfy.org", help="ComfyUI API base URL")
parser.add_argument("--database-url", type=str, default=None, help="database URL")

if comfy.options.args_parsing:
    args = parser.parse_args()
else:
    args = parser.parse_args([])
