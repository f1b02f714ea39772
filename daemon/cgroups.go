// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"path/filepath"
	"syscall"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// noteCgroups records why the live policy's cgroup principals match less
// than configured, logged when it changes; the service is degraded while
// there is a reason.
func (s *Service) noteCgroups(problem string) {
	s.mu.Lock()
	changed := problem != s.status.Cgroups
	s.status.Cgroups = problem
	s.mu.Unlock()
	switch {
	case changed && problem != "":
		s.log.Error("degraded: unit: and cgroup: principals match no one: " + problem)
	case changed:
		s.log.Info("unit: and cgroup: principals match as configured again")
	}
}

// unitsNow lists the units of p with the id their cgroup has now: a
// restarted unit's is new, a stopped one's is gone.
func unitsNow(p *policy.Policy) []UnitStatus {
	if p == nil || len(p.Units) == 0 {
		return nil
	}
	mount, err := bpf.Cgroup2Mount()
	out := make([]UnitStatus, len(p.Units))
	for i, u := range p.Units {
		out[i] = UnitStatus{Name: u.Name, Path: u.Path}
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(mount, u.Path), &st) == nil {
			out[i].ID = st.Ino
		}
	}
	return out
}
