// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// How status words a failed load: LastError has every problem, one a
// line; STATUS= has one line, the first problem and how many more; while
// the last good set is enforced instead, both say so.
func TestFailure(t *testing.T) {
	two := config.Errors{
		{Pos: config.Pos{File: "/etc/ntf/conf.d/50-y.yml", Line: 2}, Msg: `endpoint "y": missing allow`},
		{Pos: config.Pos{File: "/etc/ntf/conf.d/50-y.yml", Line: 5}, Msg: `unknown key "alow" in endpoint "y"`},
	}
	for _, tc := range []struct {
		name     string
		err      error
		fallback string
		want     lastError
	}{
		{"every problem of the set", fmt.Errorf("load: %w", two), "", lastError{
			text:     "/etc/ntf/conf.d/50-y.yml:2: endpoint \"y\": missing allow\n/etc/ntf/conf.d/50-y.yml:5: unknown key \"alow\" in endpoint \"y\"",
			line:     `/etc/ntf/conf.d/50-y.yml:2: endpoint "y": missing allow (and 1 more)`,
			problems: 2,
		}},
		{"one error", errWriting, "", lastError{text: errWriting.Error(), line: errWriting.Error(), problems: 1}},
		{"errors joined", errors.Join(errors.New("attach eth0: busy"), errors.New("attach ens5: gone")), "", lastError{
			text: "attach eth0: busy\nattach ens5: gone", line: "attach eth0: busy (and 1 more)", problems: 2,
		}},
		{"on the last good set", two[:1], "the last good set of 2026-12-06 05:00:00 UTC", lastError{
			text:     "/etc/ntf/conf.d/50-y.yml:2: endpoint \"y\": missing allow\nenforcing the last good set of 2026-12-06 05:00:00 UTC until the files are valid",
			line:     `/etc/ntf/conf.d/50-y.yml:2: endpoint "y": missing allow; enforcing the last good set of 2026-12-06 05:00:00 UTC until the files are valid`,
			problems: 1,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failure(tc.err, tc.fallback); got != tc.want {
				t.Errorf("failure() =\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}
