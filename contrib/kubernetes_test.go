// SPDX-License-Identifier: Apache-2.0

package contrib

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	yaml "go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// manifests is contrib/kubernetes parsed: every object of the
// kustomization's resources, plus the detach pod, by kind and name.
type manifests map[string]map[string]any

func (m manifests) obj(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	o, ok := m[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s %q in contrib/kubernetes", kind, name)
	}
	return o
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	k := readDocs(t, here(t, "kubernetes", "kustomization.yaml"))
	if len(k) != 1 {
		t.Fatalf("kustomization.yaml: %d documents", len(k))
	}
	files := []string{"detach-pod.yaml"}
	for _, r := range list(t, k[0], "resources") {
		files = append(files, r.(string))
	}
	m := manifests{}
	for _, f := range files {
		for _, doc := range readDocs(t, here(t, "kubernetes", f)) {
			key := str(t, doc, "kind") + "/" + str(t, doc, "metadata", "name")
			if _, dup := m[key]; dup {
				t.Fatalf("%s: %s defined twice", f, key)
			}
			m[key] = doc
		}
	}
	return m
}

func TestKubernetesObjects(t *testing.T) {
	m := loadManifests(t)
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{
		"ConfigMap/net-tc-filter-dropins", "ConfigMap/net-tc-filter-main",
		"DaemonSet/net-tc-filter", "Namespace/net-tc-filter",
		"Pod/net-tc-filter-detach-NODE_NAME",
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("objects %v, want %v", keys, want)
	}
	k := readDocs(t, here(t, "kubernetes", "kustomization.yaml"))[0]
	if ns := str(t, k, "namespace"); ns != "net-tc-filter" {
		t.Errorf("kustomization namespace %q", ns)
	}
}

// TestKubernetesPodSpec: the DaemonSet runs in the node's network
// namespace with exactly the capabilities SPEC §3 names, and keeps its
// pins on the host's bpffs.
func TestKubernetesPodSpec(t *testing.T) {
	m := loadManifests(t)
	ds := m.obj(t, "DaemonSet", "net-tc-filter")
	if v := str(t, ds, "apiVersion"); v != "apps/v1" {
		t.Errorf("DaemonSet apiVersion %q", v)
	}
	pod := get(t, ds, "spec", "template", "spec").(map[string]any)
	checkPodSpec(t, "DaemonSet", pod)
	if pod["hostPID"] == true {
		t.Error("hostPID is not needed and must not be set")
	}
	if sc, ok := pod["securityContext"].(map[string]any); ok && sc["fsGroup"] != nil {
		t.Error("a pod fsGroup re-owns the ConfigMap files")
	}
	c := get(t, pod, "containers", 0)
	if args := fmt.Sprint(get(t, c, "args")); args != "[run --config /etc/net-tc-filter/net-tc-filter.yml]" {
		t.Errorf("args %s", args)
	}
	for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		h := get(t, c, probe, "httpGet")
		got := fmt.Sprint(get(t, h, "host"), ":", get(t, h, "port"), get(t, h, "path"))
		if got != "127.0.0.1:9963/metrics" {
			t.Errorf("%s: %s, want 127.0.0.1:9963/metrics", probe, got)
		}
	}
	// Every ConfigMap volume: the pod's files must be root-owned and not
	// writable by group or others, or the daemon refuses them.
	for _, v := range list(t, pod, "volumes") {
		cm, ok := v.(map[string]any)["configMap"].(map[string]any)
		if !ok {
			continue
		}
		mode, ok := cm["defaultMode"].(int)
		if !ok || mode&0o022 != 0 || mode&0o400 == 0 {
			t.Errorf("volume %v: defaultMode %v, want 0644 or 0444", v.(map[string]any)["name"], cm["defaultMode"])
		}
		m.obj(t, "ConfigMap", str(t, cm, "name"))
	}

	// The detach pod needs the same access, on the same pins.
	dp := m.obj(t, "Pod", "net-tc-filter-detach-NODE_NAME")
	dpod := get(t, dp, "spec").(map[string]any)
	checkPodSpec(t, "detach Pod", dpod)
	if args := fmt.Sprint(get(t, dpod, "containers", 0, "args")); args != "[detach]" {
		t.Errorf("detach pod args %s", args)
	}
	if img, dimg := str(t, c, "image"), str(t, dpod, "containers", 0, "image"); img != dimg {
		t.Errorf("detach pod image %s, DaemonSet %s", dimg, img)
	}
}

func checkPodSpec(t *testing.T, what string, pod map[string]any) {
	t.Helper()
	if pod["hostNetwork"] != true {
		t.Errorf("%s: hostNetwork must be true (the filter goes on the node's interfaces)", what)
	}
	containers := list(t, pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("%s: %d containers", what, len(containers))
	}
	c := containers[0]
	sc := get(t, c, "securityContext")
	for key, want := range map[string]any{
		"privileged": false, "allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem": true, "runAsUser": 0,
	} {
		if got := get(t, sc, key); got != want {
			t.Errorf("%s: securityContext.%s = %v, want %v", what, key, got, want)
		}
	}
	if got := fmt.Sprint(get(t, sc, "capabilities", "drop")); got != "[ALL]" {
		t.Errorf("%s: capabilities.drop %s, want [ALL]", what, got)
	}
	var add []string
	for _, a := range list(t, sc, "capabilities", "add") {
		add = append(add, a.(string))
	}
	sort.Strings(add)
	if !slices.Equal(add, []string{"BPF", "NET_ADMIN", "PERFMON"}) {
		t.Errorf("%s: capabilities.add %v, want exactly BPF NET_ADMIN PERFMON", what, add)
	}
	bpffs := byName(t, list(t, pod, "volumes"), "bpffs")
	if p, typ := str(t, bpffs, "hostPath", "path"), str(t, bpffs, "hostPath", "type"); p != "/sys/fs/bpf" || typ != "DirectoryOrCreate" {
		t.Errorf("%s: bpffs volume hostPath %s type %s", what, p, typ)
	}
	mnt := byName(t, list(t, c, "volumeMounts"), "bpffs")
	if p := str(t, mnt, "mountPath"); p != "/sys/fs/bpf" {
		t.Errorf("%s: bpffs mounted at %s", what, p)
	}
	if mp := str(t, mnt, "mountPropagation"); mp != "HostToContainer" {
		t.Errorf("%s: bpffs mountPropagation %s", what, mp)
	}
}

// TestKubernetesConfigConsistent: the probes read the listener the main
// ConfigMap configures, and a pod that stops keeps the filter.
func TestKubernetesConfigConsistent(t *testing.T) {
	m := loadManifests(t)
	data := str(t, m.obj(t, "ConfigMap", "net-tc-filter-main"), "data", "net-tc-filter.yml")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := str(t, cfg, "metrics", "listen"); got != "127.0.0.1:9963" {
		t.Errorf("metrics.listen %q, the probes use 127.0.0.1:9963", got)
	}
	if got := str(t, cfg, "on_stop"); got != "keep" {
		t.Errorf("on_stop %q: a rolling update would detach the filter", got)
	}
	dropins := m.obj(t, "ConfigMap", "net-tc-filter-dropins")
	for key := range get(t, dropins, "data").(map[string]any) {
		if !strings.HasSuffix(key, ".yml") || strings.HasPrefix(key, ".") {
			t.Errorf("drop-in key %q: the daemon reads only *.yml not starting with a dot", key)
		}
	}
	k := readDocs(t, here(t, "kubernetes", "kustomization.yaml"))[0]
	img := str(t, m.obj(t, "DaemonSet", "net-tc-filter"), "spec", "template", "spec", "containers", 0, "image")
	name, tag, _ := strings.Cut(img, ":")
	ki := get(t, k, "images", 0)
	if str(t, ki, "name") != name || str(t, ki, "newTag") != tag {
		t.Errorf("kustomization images %v do not match %s", ki, img)
	}
}

// dockerLinks returns the symlinks the Dockerfile makes (`ln -s TARGET
// LINK`), link -> target: they are the layout the daemon sees in the pod.
func dockerLinks(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(here(t, "kubernetes", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, m := range regexp.MustCompile(`ln -s (\S+) (\S+)`).FindAllStringSubmatch(string(data), -1) {
		links[m[2]] = m[1]
	}
	want := map[string]string{
		"/etc/net-tc-filter/net-tc-filter.yml": "main/..data/net-tc-filter.yml",
		"/etc/net-tc-filter/conf.d":            "dropins/..data",
	}
	if fmt.Sprint(links) != fmt.Sprint(want) {
		t.Fatalf("Dockerfile links %v, want %v", links, want)
	}
	return links
}

// podLayout recreates under root what the container sees: the image's
// /etc/net-tc-filter with its links, and each ConfigMap volume laid out
// the way kubelet's AtomicWriter does it — the volume directory mode 0777
// (an emptyDir), the files in a timestamped 0755 directory, ..data
// pointing at it and one symlink per key. confDVolume mounts the drop-ins
// volume straight at conf.d instead, the naive layout. It returns the
// main file and the volume directories the pod mounts read-only: the
// daemon accepts a 0777 directory on the way to its files only on a
// read-only mount, which nobody can write through.
func podLayout(t *testing.T, m manifests, confDVolume bool) (string, []string) {
	t.Helper()
	root := t.TempDir()
	etc := filepath.Join(root, "etc", "net-tc-filter")
	mkdir(t, etc, 0o755)
	pod := get(t, m.obj(t, "DaemonSet", "net-tc-filter"), "spec", "template", "spec")
	links := dockerLinks(t)
	var readOnly []string
	for _, mnt := range list(t, pod, "containers", 0, "volumeMounts") {
		vol := byName(t, list(t, pod, "volumes"), str(t, mnt, "name"))
		cm, ok := vol["configMap"].(map[string]any)
		if !ok {
			continue
		}
		dir := filepath.Join(root, str(t, mnt, "mountPath"))
		if confDVolume && str(t, cm, "name") == "net-tc-filter-dropins" {
			dir = filepath.Join(etc, "conf.d")
			delete(links, "/etc/net-tc-filter/conf.d")
		}
		data := get(t, m.obj(t, "ConfigMap", str(t, cm, "name")), "data").(map[string]any)
		configMapVolume(t, dir, data, os.FileMode(cm["defaultMode"].(int)))
		if mnt.(map[string]any)["readOnly"] == true {
			readOnly = append(readOnly, dir)
		}
	}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(etc, "net-tc-filter.yml"), readOnly
}

func configMapVolume(t *testing.T, dir string, data map[string]any, mode os.FileMode) {
	t.Helper()
	mkdir(t, dir, 0o777)
	ts := "..2026_11_24_12_00_00.123456789"
	mkdir(t, filepath.Join(dir, ts), 0o755)
	for key, content := range data {
		p := filepath.Join(dir, ts, key)
		if err := os.WriteFile(p, []byte(content.(string)), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", key), filepath.Join(dir, key)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// check runs the real `check` on a pod layout, with the volumes the pod
// mounts read-only bind-mounted read-only onto themselves, as the
// container runtime does, in a mount namespace of its own: the mounts are
// never seen outside it and end with it.
func check(t *testing.T, mainFile string, readOnly []string) (string, error) {
	t.Helper()
	bin := binary(t)
	type result struct {
		out        []byte
		err, setup error
	}
	done := make(chan result)
	go func() {
		// Never unlocked: the thread, and its namespace, end with the
		// goroutine. The command is forked from this thread, into it.
		runtime.LockOSThread()
		setup := func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			for _, d := range readOnly {
				if err := unix.Mount(d, d, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind %s: %w", d, err)
				}
				if err := unix.Mount("", d, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
					return fmt.Errorf("read-only %s: %w", d, err)
				}
			}
			return nil
		}
		if err := setup(); err != nil {
			done <- result{setup: err}
			return
		}
		out, err := exec.Command(bin, "check", "--config", mainFile).CombinedOutput()
		done <- result{out: out, err: err}
	}()
	r := <-done
	if r.setup != nil {
		t.Fatal(r.setup)
	}
	return string(r.out), r.err
}

// TestKubernetesConfigPassesCheck runs the ConfigMaps through the real
// `check`, as the pod lays them out: valid, and the IMDS range compiled.
func TestKubernetesConfigPassesCheck(t *testing.T) {
	testnet.RequireRoot(t)
	m := loadManifests(t)
	mainFile, readOnly := podLayout(t, m, false)
	if len(readOnly) != 2 {
		t.Fatalf("read-only volumes %q, want main and dropins: kubelet mounts ConfigMaps read-only", readOnly)
	}
	out, err := check(t, mainFile, readOnly)
	if err != nil {
		t.Fatalf("net-tc-filter check on the pod's layout: %v\n%s", err, out)
	}
	for _, want := range []string{"169.254.169.254/32", "fd00:ec2::254/128"} {
		if !strings.Contains(out, want) {
			t.Errorf("compiled policy lacks %s:\n%s", want, out)
		}
	}
}

// TestKubernetesNaiveMountRefused is why the image links conf.d to
// ..data: a ConfigMap volume mounted as conf.d is a mode 0777 directory,
// and the daemon refuses the whole set.
func TestKubernetesNaiveMountRefused(t *testing.T) {
	testnet.RequireRoot(t)
	m := loadManifests(t)
	mainFile, readOnly := podLayout(t, m, true)
	out, err := check(t, mainFile, readOnly)
	if err == nil {
		t.Fatalf("check accepted a mode 0777 conf.d:\n%s", out)
	}
	if !strings.Contains(out, "conf.d: refusing: directory writable by group or others (mode 0777)") {
		t.Errorf("check did not name the 0777 conf.d:\n%s", out)
	}
}
