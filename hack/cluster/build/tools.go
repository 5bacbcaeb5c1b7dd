//go:build tools

// Package build records programs built from this module that live in other
// modules' main packages, so that go mod tidy keeps their requirements.
package build

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
