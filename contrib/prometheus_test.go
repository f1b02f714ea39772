// SPDX-License-Identifier: Apache-2.0

package contrib

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// metrics are the names the daemon exports (issue 7); the dashboard and
// the alerts may use these, the go_* and process_* collectors' and up.
var metrics = []string{
	"net_tc_filter_packets_total",
	"net_tc_filter_endpoint_packets_total",
	"net_tc_filter_kernel_packets_total",
	"net_tc_filter_events_lost_total",
	"net_tc_filter_log_suppressed_total",
	"net_tc_filter_reloads_total",
	"net_tc_filter_generation",
	"net_tc_filter_last_reload_timestamp_seconds",
	"net_tc_filter_last_reload_duration_seconds",
	"net_tc_filter_last_reload_success",
	"net_tc_filter_ranges",
	"net_tc_filter_interface_info",
	"net_tc_filter_state",
	"net_tc_filter_build_info",
}

// promqlWords are the functions, aggregations and keywords the files may
// use; any other identifier outside label matchers is taken as a metric.
var promqlWords = strings.Fields(`sum min max avg count group stddev stdvar
	topk bottomk quantile count_values rate irate increase delta idelta deriv
	absent absent_over_time changes resets time timestamp vector scalar
	avg_over_time max_over_time min_over_time sum_over_time last_over_time
	predict_linear clamp_min clamp_max abs ceil floor round sort sort_desc
	and or unless offset bool label_values`)

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promVars     = regexp.MustCompile(`\$\{?\w+\}?`)
	promIdent    = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// label_values(metric, label): the second argument is a label.
	labelValues = regexp.MustCompile(`label_values\(\s*([^,]+),\s*\w+\s*\)`)
)

// metricNames returns the metric names an expression reads, and the
// identifiers that are neither a known PromQL word nor an allowed metric.
func metricNames(expr string) (used, unknown []string) {
	e := labelValues.ReplaceAllString(expr, "label_values($1)")
	for _, re := range []*regexp.Regexp{promStrings, promMatchers, promRanges, promGrouping, promVars} {
		e = re.ReplaceAllString(e, " ")
	}
	for _, id := range promIdent.FindAllString(e, -1) {
		switch {
		case slices.Contains(promqlWords, id):
		case slices.Contains(metrics, id), id == "up",
			strings.HasPrefix(id, "go_"), strings.HasPrefix(id, "process_"):
			used = append(used, id)
		default:
			unknown = append(unknown, id)
		}
	}
	return used, unknown
}

func TestMetricNamesChecker(t *testing.T) {
	used, unknown := metricNames(`sum by (interface) (rate(net_tc_filter_packets_total{instance=~"$instance", action="deny"}[$__rate_interval])) > 5 * sum(rate(net_tc_filter_packets_totl[1h] offset 15m))`)
	if !slices.Equal(used, []string{"net_tc_filter_packets_total"}) || !slices.Equal(unknown, []string{"net_tc_filter_packets_totl"}) {
		t.Fatalf("used %v unknown %v", used, unknown)
	}
}

type dashPanel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // rows
}

// TestDashboard: the dashboard parses, every query reads only exported
// metrics, and the panels are there.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(here(t, "prometheus", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string      `json:"title"`
		UID        string      `json:"uid"`
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	seen := map[string]bool{}
	exprs := map[string]string{} // expression -> where
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs[q["query"].(string)] = "variable " + v.Name
		}
	}
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
			}
			if p.Type != "row" && p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs[tg.Expr] = "panel " + p.Title
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for expr, where := range exprs {
		used, unknown := metricNames(expr)
		if len(unknown) > 0 {
			t.Errorf("%s: %v are not exported metrics: %s", where, unknown, expr)
		}
		if len(used) == 0 {
			t.Errorf("%s reads no metric: %s", where, expr)
		}
		for _, m := range used {
			seen[m] = true
		}
	}
	// Everything the daemon exports has a panel (build_info: the version
	// column and the node variable).
	var missing []string
	for _, m := range metrics {
		if !seen[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v", missing)
	}
}

// TestAlertsMetricNames: promtool checks the rules' syntax and behaviour
// (prometheus/test.sh), not that they read metrics that exist; this does.
func TestAlertsMetricNames(t *testing.T) {
	docs := readDocs(t, here(t, "prometheus", "alerts.yml"))
	var names []string
	for _, g := range list(t, docs[0], "groups") {
		for _, r := range list(t, g, "rules") {
			name, expr := str(t, r, "alert"), str(t, r, "expr")
			names = append(names, name)
			used, unknown := metricNames(expr)
			if len(unknown) > 0 || len(used) == 0 {
				t.Errorf("%s: reads %v, unknown %v: %s", name, used, unknown, expr)
			}
			if sev := str(t, r, "labels", "severity"); !slices.Contains([]string{"info", "warning", "critical"}, sev) {
				t.Errorf("%s: severity %q", name, sev)
			}
		}
	}
	for _, want := range []string{"NetTcFilterDeniedSpike", "NetTcFilterReloadFailed", "NetTcFilterEventsLost", "NetTcFilterDown", "NetTcFilterAbsent", "NetTcFilterLogSuppressed"} {
		if !slices.Contains(names, want) {
			t.Errorf("alert %s missing", want)
		}
	}
}
