# Source this file: settings that let podman build and run images on these machines (as root).
# A copy of the recipe in ../shared/containers (see scripts/check-container), so that a clone of
# the repository alone can build and check the image; keep the two in step.
ctr=${CTR_DIR:-/tmp/ctr}
mkdir -p "$ctr"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null; }
fi
cat > "$ctr/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$ctr/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$ctr/storage"
runroot = "$ctr/run"
CONF
export CONTAINERS_CONF=$ctr/containers.conf CONTAINERS_STORAGE_CONF=$ctr/storage.conf
