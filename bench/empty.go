// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Names of the empty-program lanes (issue 23): the floor every tc egress
// program pays, in each attach mode, measured in the same rounds as the
// filters.
const (
	NameEmptyTCX    = "empty-tcx"
	NameEmptyClsact = "empty-clsact"
)

// isFloor says whether a lane has no filter that drops anything: no
// filter at all, or an empty program.
func isFloor(name string) bool {
	return name == NameNone || name == NameEmptyTCX || name == NameEmptyClsact
}

// Empty attaches a tc egress program that does nothing but let the packet
// go on (TC_ACT_UNSPEC, which is TCX_NEXT for tcx): what any tc filter
// costs before it reads a byte of the packet. Clsact chooses the legacy
// clsact qdisc with a direct-action cls_bpf filter; else tcx, as the
// daemon attaches where the kernel has it.
type Empty struct {
	NS     *netlab.NS
	Clsact bool

	prog *netlab.EmptyProgram
}

func (e *Empty) Name() string {
	if e.Clsact {
		return NameEmptyClsact
	}
	return NameEmptyTCX
}

// Apply attaches the program once; the rule set means nothing to it.
func (e *Empty) Apply(RuleSet) (time.Duration, error) {
	if e.prog != nil {
		return 0, nil
	}
	start := time.Now()
	p, err := netlab.AttachEmpty(e.NS, Iface, e.Clsact)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", e.Name(), err)
	}
	e.prog = p
	return time.Since(start), nil
}

// Remove detaches the program. The clsact qdisc goes with the lane's
// namespace.
func (e *Empty) Remove() error {
	if e.prog == nil {
		return nil
	}
	err := e.prog.Close()
	e.prog = nil
	return err
}

// ProgStat is what the kernel counted of one filter's tc program during
// one extra UDP round with BPF run-time statistics on (bpf_stats): the
// program's own time per packet, which the sender's time includes.
type ProgStat struct {
	Filter   string  `json:"filter"`
	Size     int     `json:"rules"`
	Runs     uint64  `json:"runs"`
	NsPerRun float64 `json:"ns_per_run"`
}

// laneProgram returns the tc egress program of a lane's filter for bpf_stats:
// the empty programs' own, the daemon's as tcx lists it on the lane's
// interface; nil for netfilter and for no filter.
func laneProgram(l *lane, f Filter) (*ebpf.Program, error) {
	switch f := f.(type) {
	case *Empty:
		if f.prog == nil {
			return nil, errors.New("empty program not attached")
		}
		return f.prog.Prog.Clone()
	case *Ours:
		var prog *ebpf.Program
		err := l.tp.Client.Do(func() error {
			ifc, err := net.InterfaceByName(Iface)
			if err != nil {
				return err
			}
			q, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXEgress})
			if err != nil {
				return fmt.Errorf("tcx programs of %s: %w", Iface, err)
			}
			if len(q.Programs) != 1 {
				return fmt.Errorf("%d tcx programs on %s, want the daemon's alone", len(q.Programs), Iface)
			}
			prog, err = ebpf.NewProgramFromID(q.Programs[0].ID)
			return err
		})
		return prog, err
	}
	return nil, nil
}
