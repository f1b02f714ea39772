#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks the alert rules with promtool (Debian package "prometheus"):
# syntax, then the unit tests in alerts_test.yml. Installs promtool with
# apt when it is missing. The dashboard is checked by `go test ./contrib`.
set -eu
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
promtool check rules alerts.yml
promtool test rules alerts_test.yml
