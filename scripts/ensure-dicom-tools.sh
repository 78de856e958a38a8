#!/usr/bin/env bash
# The DICOM peers the tests talk to (dcmtk storescu/echoscu, Orthanc with its DICOMweb plugin),
# and HAProxy (the load balancer of tests/cluster/):
# installed from Debian when missing. Orthanc's own service is not started; tests run their own.
set -euo pipefail
need=()
command -v storescu >/dev/null || need+=(dcmtk)
command -v Orthanc >/dev/null || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v haproxy >/dev/null || need+=(haproxy)  # the cluster test's load balancer
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing ${need[*]} (apt-get)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
