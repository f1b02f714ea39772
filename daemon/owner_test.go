// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

type ownerResolver struct{ noUnits bool }

func (ownerResolver) User(name string) (uint32, error) {
	if name == "alice" {
		return 1001, nil
	}
	return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
}

func (ownerResolver) Group(string) ([]uint32, error) { return nil, nil }

func (r ownerResolver) UnitCgroup(name string) (policy.UnitCgroup, error) {
	if r.noUnits {
		return policy.UnitCgroup{}, errors.New("cannot be resolved: PID 1 is not systemd (it is \"tini\"): use cgroup:PATH")
	}
	return policy.UnitCgroup{Path: "/system.slice/" + name, Exists: true}, nil
}

// Senders as D-Bus Check and explain take them: with the cgroup of a unit
// or a path, or a cgroup alone (a uid that no list names).
func TestParseOwnerCgroups(t *testing.T) {
	tests := []struct {
		in   string
		r    policy.Resolver
		want policy.Owner
		err  string
	}{
		{"alice", ownerResolver{}, policy.Owner{UID: 1001}, ""},
		{"alice@unit:agent.service", ownerResolver{}, policy.Owner{UID: 1001, Cgroup: "/system.slice/agent.service"}, ""},
		{"uid:0@unit:agent.service", ownerResolver{}, policy.Owner{UID: 0, Cgroup: "/system.slice/agent.service"}, ""},
		{"unit:agent.service", ownerResolver{}, policy.Owner{UID: config.UnknownUID, Cgroup: "/system.slice/agent.service"}, ""},
		{"cgroup:/a/b", ownerResolver{}, policy.Owner{UID: config.UnknownUID, Cgroup: "/a/b"}, ""},
		{"alice@cgroup:/a/b", ownerResolver{}, policy.Owner{UID: 1001, Cgroup: "/a/b"}, ""},
		{"unowned@cgroup:/a", ownerResolver{}, policy.Owner{}, "a packet without a socket has no cgroup"},
		{"alice@cgroup:a", ownerResolver{}, policy.Owner{}, "must be absolute"},
		{"unit:agent", ownerResolver{}, policy.Owner{}, "has no type suffix"},
		{"unit:agent.service", ownerResolver{noUnits: true}, policy.Owner{}, "unit agent.service cannot be resolved: PID 1 is not systemd"},
		{"carol@unit:agent.service", ownerResolver{}, policy.Owner{}, "unknown"},
	}
	for _, tt := range tests {
		got, err := ParseOwner(tt.in, tt.r)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseOwner(%q) = %+v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseOwner(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	// A cgroup alone passes by cgroup only, and says so.
	o, _ := ParseOwner("unit:agent.service", ownerResolver{})
	if got := o.String(); got != "cgroup /system.slice/agent.service" {
		t.Errorf("%+v reads %q", o, got)
	}
}
