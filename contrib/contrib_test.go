// SPDX-License-Identifier: Apache-2.0

// Package contrib holds no code, only the tests of what contrib/ ships for
// fleets: the Kubernetes manifests (structure, and their configuration run
// through the real `net-tc-filter check` laid out as a pod sees it), and
// the Prometheus dashboard and alerts (only metric names the daemon
// exports). The Ansible role and the alert rules have their own scripts
// (ansible/test.sh, prometheus/test.sh) because they need Debian packages.
package contrib

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// binaryEnv names a prebuilt daemon to test with instead of building one,
// as in daemon/testnet.
const binaryEnv = "NTF_TEST_BINARY"

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// binary builds ./cmd/net-tc-filter once per test run: `check` is the
// contract the manifests must pass, so the test uses the real command.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(binaryEnv); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ntf-contrib-")
		if err != nil {
			buildErr = err
			return
		}
		builtPath = filepath.Join(dir, "net-tc-filter")
		cmd := exec.Command("go", "build", "-o", builtPath, "./cmd/net-tc-filter")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go build ./cmd/net-tc-filter: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtPath != "" {
		os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}

// repoRoot is the module root, one level above this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Dir(filepath.Dir(file))
}

// here is contrib/ itself.
func here(t *testing.T, rel ...string) string {
	return filepath.Join(append([]string{repoRoot(t), "contrib"}, rel...)...)
}

// readDocs parses every YAML document of a file into generic maps.
func readDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks a parsed YAML tree by map keys and list indexes; a missing
// step fails the test, naming the path.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, step := range path {
		switch s := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a mapping at %v", path[:i+1], path[:i])
			}
			if v, ok = m[s]; !ok {
				t.Fatalf("%v: missing", path[:i+1])
			}
		case int:
			l, ok := v.([]any)
			if !ok || s >= len(l) {
				t.Fatalf("%v: no item %d", path[:i+1], s)
			}
			v = l[s]
		}
	}
	return v
}

func list(t *testing.T, v any, path ...any) []any {
	t.Helper()
	l, ok := get(t, v, path...).([]any)
	if !ok {
		t.Fatalf("%v: not a list", path)
	}
	return l
}

func str(t *testing.T, v any, path ...any) string {
	t.Helper()
	s, ok := get(t, v, path...).(string)
	if !ok {
		t.Fatalf("%v: not a string", path)
	}
	return s
}

// byName finds the element of a list of mappings whose "name" is name.
func byName(t *testing.T, l []any, name string) map[string]any {
	t.Helper()
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no entry named %q", name)
	return nil
}
