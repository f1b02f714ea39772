// SPDX-License-Identifier: Apache-2.0

// Command ntf-bench measures net-tc-filter against iptables -m owner and
// nftables meta skuid on one veth pair between two throwaway network
// namespaces (issue 6) and writes results.json, results.md and results.svg.
//
// It must run as root. Traffic only flows between the namespaces it
// creates; its senders refuse the host's namespace and any source address
// outside the link net.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nettcfilter/net-tc-filter/bench"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.AgentCommand {
		if err := bench.AgentMain(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

func run() int {
	quick := flag.Bool("quick", false, "smoke run: small sizes, one repetition")
	out := flag.String("out", "bench", "directory for results.json, results.md and results.svg")
	daemon := flag.String("daemon", "./net-tc-filter", "the net-tc-filter binary to measure")
	repo := flag.String("repo", ".", "module root (part 1 runs go test ./bpf there)")
	reps := flag.Int("reps", 0, "throughput rounds per size (default 7; -quick 1)")
	skipClassify := flag.Bool("skip-classify", false, "leave out part 1 (the BPF_PROG_TEST_RUN benchmarks)")
	benchtime := flag.String("classify-benchtime", "", "go test -benchtime for part 1 (default 1s; -quick 1x)")
	render := flag.String("render", "", "measure nothing: write results.md and results.svg from this results.json")
	partsFlag := flag.String("parts", "", "comma-separated parts to run (1-5; default all)")
	flag.Parse()
	var parts []int
	for _, f := range strings.FieldsFunc(*partsFlag, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 5 {
			fmt.Fprintf(os.Stderr, "ntf-bench: -parts: %q is not a part (1-5)\n", f)
			return 2
		}
		parts = append(parts, n)
	}
	if *render != "" {
		return rerender(*render, *out)
	}
	if err := netlab.CheckRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "ntf-bench:", err)
		return 2
	}
	cfg := bench.FullConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *reps > 0 {
		cfg.Reps = *reps
	}
	if *benchtime != "" {
		cfg.ClassifyBenchtime = *benchtime
	}
	bin, err := filepath.Abs(*daemon)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ntf-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := bench.Run(ctx, bench.Options{Config: cfg, Daemon: bin, Repo: *repo, Log: os.Stderr, SkipClassify: *skipClassify, Parts: parts})
	if res != nil {
		if err := write(*out, res); err != nil {
			fmt.Fprintln(os.Stderr, "ntf-bench:", err)
			return 1
		}
		fmt.Print(bench.Markdown(res))
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "ntf-bench:", runErr)
		if errors.Is(runErr, bench.ErrCorrectness) {
			fmt.Fprintln(os.Stderr, "ntf-bench: a filter misbehaved; no figure of this run counts")
		}
		return 1
	}
	return 0
}

func write(dir string, res *bench.Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	j, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	files := map[string][]byte{
		"results.json": append(j, '\n'),
		"results.md":   []byte(bench.Markdown(res)),
		"results.svg":  []byte(bench.SVG(res)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// rerender writes the report of an earlier run again (e.g. after a change
// of the report's layout), from its results.json.
func rerender(path, dir string) int {
	b, err := os.ReadFile(path)
	if err == nil {
		var res bench.Results
		if err = json.Unmarshal(b, &res); err == nil {
			res.Goals = bench.Goals(&res)
			err = write(dir, &res)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ntf-bench -render:", err)
		return 1
	}
	return 0
}
