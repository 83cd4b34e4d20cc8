package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// table collects every run's figures and prints medians as the issue's
// targets table.
type table struct {
	o       *options
	figures map[string][]float64
	sizes   map[string]string // scenario/server → "n sockets, m subscriptions"
	notes   []string
}

// note adds a line under the table, once.
func (t *table) note(s string) {
	if !contains(t.notes, s) {
		t.notes = append(t.notes, s)
	}
}

func (t *table) add(key string, v float64) {
	if t.figures == nil {
		t.figures = map[string][]float64{}
	}
	t.figures[key] = append(t.figures[key], v)
}

// get returns the median of key's runs.
func (t *table) get(key string) (float64, bool) {
	v := append([]float64(nil), t.figures[key]...)
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

func (t *table) addFanout(scenario, server string, r *fanoutResult) {
	k := scenario + "/" + server + "/"
	if t.sizes == nil {
		t.sizes = map[string]string{}
	}
	t.sizes[scenario+"/"+server] = fmt.Sprintf("%d sockets, %d subscriptions", r.sockets, r.subs)
	t.add(k+"rss", r.rssPerSocket)
	if !math.IsNaN(r.goroutinesPerSock) {
		t.add(k+"goroutines", r.goroutinesPerSock)
	}
	t.add(k+"missing", float64(r.missing))
	if r.latencyDeliveries > 0 {
		t.add(k+"p50", float64(r.p50))
		t.add(k+"p99", float64(r.p99))
		t.add(k+"max", float64(r.max))
		t.add(k+"ack", float64(r.ack))
	}
	if r.deliveriesPerSec > 0 {
		t.add(k+"dps", r.deliveriesPerSec)
	}
}

func (t *table) addRate(scenario string, gw, base *rateResult) {
	for name, r := range map[string]*rateResult{"switchboard": gw, "baseline": base} {
		k := scenario + "/" + name + "/"
		t.add(k+"rate", r.perSec)
		t.add(k+"p50", float64(r.p50))
		t.add(k+"p99", float64(r.p99))
		t.add(k+"errors", float64(r.errors))
	}
}

// addSmallWrite records the mutations baseline's small write (two values
// of about 60 bytes) and the sizes of the same write.
func (t *table) addSmallWrite(r *rateResult, sizes writeSizes) {
	t.add("mutations/small/rate", r.perSec)
	t.add("mutations/small/p50", float64(r.p50))
	t.add("mutations/small/p99", float64(r.p99))
	t.add("mutations/small/errors", float64(r.errors))
	t.add("mutations/sizes/record", float64(sizes.Record))
	t.add("mutations/sizes/event", float64(sizes.Event))
	t.add("mutations/sizes/audit", float64(sizes.Audit))
}

func (t *table) addResume(server string, r *resumeResult) {
	k := "resume/" + server + "/"
	t.add(k+"events", float64(r.events))
	t.add(k+"total", float64(r.total))
	t.add(k+"first", float64(r.first))
	t.add(k+"min", float64(r.min))
	t.add(k+"max", float64(r.max))
	t.add(k+"commit", r.commitRate)
	t.add(k+"resumes", float64(r.resumes))
}

func (t *table) addChurn(server string, r *churnResult) {
	k := "churn/" + server + "/"
	t.add(k+"gor0", r.gorBefore)
	t.add(k+"gor1", r.gorAfter)
	t.add(k+"heap0", r.heapBefore)
	t.add(k+"heap1", r.heapAfter)
	t.add(k+"rss0", float64(r.rssBefore))
	t.add(k+"rss1", float64(r.rssAfter))
}

func (t *table) addDatasize(r *datasizeResult) {
	for k, v := range map[string]float64{
		"n0": float64(r.small), "n1": float64(r.large),
		"list0": float64(r.listSmall), "list1": float64(r.listLarge),
		"http0": float64(r.httpSmall), "http1": float64(r.httpLarge),
		"start0": float64(r.startSmall), "start1": float64(r.startLarge),
	} {
		t.add("datasize/"+k, v)
	}
}

func ms(v float64) string { return fmt.Sprintf("%.1f ms", v/float64(time.Millisecond)) }

// cell formats key with f, or "—" when it was not measured.
func (t *table) cell(key string, f func(float64) string) string {
	v, ok := t.get(key)
	if !ok {
		return "—"
	}
	return f(v)
}

// ratio is a/b, or "—".
func (t *table) ratio(a, b string) (float64, string) {
	x, ok1 := t.get(a)
	y, ok2 := t.get(b)
	if !ok1 || !ok2 || y == 0 {
		return 0, "—"
	}
	return x / y, fmt.Sprintf("%.2f×", x/y)
}

func verdict(ok bool, measured bool) string {
	if !measured {
		return "—"
	}
	if ok {
		return "met"
	}
	return "not met"
}

func (t *table) print(w io.Writer) {
	if len(t.figures) == 0 {
		return
	}
	runs := 0
	for _, v := range t.figures {
		runs = max(runs, len(v))
	}
	fmt.Fprintf(w, "\nswitchboard-load: medians of %d run(s); ratios against baselines measured in this invocation\n\n", runs)
	fmt.Fprintln(w, "| what | target | switchboard | bare-write baseline | stock gqlgen | GraphQL Yoga (Node) | plain net/http | ratio | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	// row takes what, target, switchboard, bare, gqlgen, net/http, ratio,
	// verdict; yoga is the Yoga column's cell of the row being printed.
	yoga := ""
	row := func(cols ...string) {
		cols = append(cols[:5:5], append([]string{yoga}, cols[5:]...)...)
		yoga = ""
		fmt.Fprintln(w, "| "+strings.Join(cols, " | ")+" |")
	}
	// size is the Yoga cell's suffix when it ran at another size.
	size := func(s string) string {
		if ys, ok := t.sizes[s+"/yoga"]; ok && ys != t.sizes[s+"/switchboard"] {
			return " (" + ys + ")"
		}
		return ""
	}
	// ratios lists the peers' ratios to the bare baseline for the ratio
	// column.
	ratios := func(s, fig string) string {
		var out []string
		for _, p := range []struct{ key, name string }{{"gqlgen", "gqlgen"}, {"yoga", "Yoga"}} {
			if _, r := t.ratio(s+"/"+p.key+"/"+fig, s+"/bare/"+fig); r != "—" {
				out = append(out, p.name+" "+r)
			}
		}
		if len(out) == 0 {
			return ""
		}
		return " (" + strings.Join(out, ", ") + ")"
	}
	dps := func(v float64) string { return fmt.Sprintf("%.0f/s", v) }
	lat := func(s, server string) string {
		k := s + "/" + server + "/"
		if _, ok := t.get(k + "p99"); !ok {
			return "—"
		}
		return t.cell(k+"p50", ms) + " / " + t.cell(k+"p99", ms) + " (max " + t.cell(k+"max", ms) + "; publish answered in " + t.cell(k+"ack", ms) + ")"
	}
	idle := func(server string) string {
		k := "idle/" + server + "/"
		if _, ok := t.get(k + "rss"); !ok {
			return "—"
		}
		return t.cell(k+"rss", func(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }) + ", " +
			t.cell(k+"goroutines", func(v float64) string { return fmt.Sprintf("%.2f goroutines", v) })
	}

	if _, ok := t.get("fanout/switchboard/dps"); ok {
		r, rs := t.ratio("fanout/switchboard/dps", "fanout/bare/dps")
		if _, ok := t.get("fanout/yoga/dps"); ok {
			yoga = t.cell("fanout/yoga/dps", dps) + size("fanout")
		}
		row("sustained fan-out throughput ("+t.sizes["fanout/switchboard"]+")", "≥ 0.80× bare", t.cell("fanout/switchboard/dps", dps), t.cell("fanout/bare/dps", dps), t.cell("fanout/gqlgen/dps", dps), "", rs+ratios("fanout", "dps"), verdict(r >= 0.8, rs != "—"))
		r, rs = t.ratio("fanout/switchboard/p99", "fanout/bare/p99")
		if _, ok := t.get("fanout/yoga/p99"); ok {
			yoga = lat("fanout", "yoga") + size("fanout")
		}
		row("one status change to all, p50 / p99 ("+t.sizes["fanout/switchboard"]+")", "p99 ≤ 1.25× bare", lat("fanout", "switchboard"), lat("fanout", "bare"), lat("fanout", "gqlgen"), "", rs+ratios("fanout", "p99"), verdict(r <= 1.25, rs != "—"))
	}
	if v, ok := t.get("idle/switchboard/rss"); ok {
		g, _ := t.get("idle/switchboard/goroutines")
		_, rs := t.ratio("idle/switchboard/rss", "idle/bare/rss")
		if _, ok := t.get("idle/yoga/rss"); ok {
			yoga = t.cell("idle/yoga/rss", func(v float64) string { return fmt.Sprintf("%.1f KiB, one JS thread", v/1024) }) + size("idle")
		}
		row("idle socket with one subscription ("+t.sizes["idle/switchboard"]+")", "≤ 16 KiB RSS, ≤ 1 goroutine", idle("switchboard"), idle("bare"), idle("gqlgen"), "", rs+ratios("idle", "rss"), verdict(v <= 16*1024 && g <= 1.05, true))
	}
	if _, ok := t.get("scale/switchboard/p99"); ok {
		r, rs := t.ratio("scale/switchboard/p99", "scale/bare/p99")
		row("scale ("+t.sizes["scale/switchboard"]+"), fan-out p50 / p99", "p99 ≤ 1.5× bare", lat("scale", "switchboard")+"; "+idle2(t, "scale/switchboard/"), lat("scale", "bare"), "", "", rs, verdict(r <= 1.5, rs != "—"))
	}
	if _, ok := t.get("query/switchboard/rate"); ok {
		r, rs := t.ratio("query/switchboard/rate", "query/baseline/rate")
		q := func(s string) string {
			return t.cell("query/"+s+"/rate", dps) + ", p50 " + t.cell("query/"+s+"/p50", ms) + ", p99 " + t.cell("query/"+s+"/p99", ms)
		}
		row(fmt.Sprintf("cached integrations query over HTTP (%d integrations, %d clients)", t.o.integrations, t.o.queryClients), "≥ 0.60× net/http", q("switchboard"), "", "", q("baseline"), rs, verdict(r >= 0.6, rs != "—"))
		row("cached integrations query in process", "≤ 10 µs, ≤ 150 allocs", "go test -bench BenchmarkIntegrationsQuery .", "", "", "", "", "see BENCHMARKS.md")
	}
	if _, ok := t.get("mutations/switchboard/rate"); ok {
		r, rs := t.ratio("mutations/switchboard/rate", "mutations/baseline/rate")
		p, ps := t.ratio("mutations/switchboard/p99", "mutations/baseline/p99")
		q := func(s string) string {
			return t.cell("mutations/"+s+"/rate", dps) + ", p50 " + t.cell("mutations/"+s+"/p50", ms) + ", p99 " + t.cell("mutations/"+s+"/p99", ms) + t.cell("mutations/"+s+"/errors", func(v float64) string {
				if v == 0 {
					return ""
				}
				return fmt.Sprintf(", %.0f errors", v)
			})
		}
		base := q("baseline")
		ratios := rs + " throughput, " + ps + " p99"
		if _, ok := t.get("mutations/small/rate"); ok {
			size := func(k string) string {
				return t.cell("mutations/sizes/"+k, func(v float64) string { return fmt.Sprintf("%.0f", v) })
			}
			base = "same write (record " + size("record") + " B, event " + size("event") + " B, audit " + size("audit") + " B): " + base + "; small write (2 × ~60 B): " + q("small")
			_, sr := t.ratio("mutations/switchboard/rate", "mutations/small/rate")
			_, sp := t.ratio("mutations/switchboard/p99", "mutations/small/p99")
			if sr != "—" {
				ratios += fmt.Sprintf(" (against the small write: %s, %s)", sr, sp)
			}
		}
		row(fmt.Sprintf("durable configureIntegration, %d clients", t.o.mutationClients), "≥ 0.70× throughput, p99 ≤ 2×", q("switchboard"), "", "", base, ratios, verdict(r >= 0.7 && p <= 2, rs != "—"))
	}
	if _, ok := t.get("churn/switchboard/gor0"); ok {
		c := func(s string) string {
			k := "churn/" + s + "/"
			if _, ok := t.get(k + "gor0"); !ok {
				return "—"
			}
			return t.cell(k+"gor0", func(v float64) string { return fmt.Sprintf("goroutines %.0f → ", v) }) + t.cell(k+"gor1", func(v float64) string { return fmt.Sprintf("%.0f", v) }) +
				t.cell(k+"heap0", func(v float64) string { return fmt.Sprintf(", heap %.1f → ", v/(1<<20)) }) + t.cell(k+"heap1", func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }) +
				t.cell(k+"rss0", func(v float64) string { return fmt.Sprintf(", RSS %.1f → ", v/(1<<20)) }) + t.cell(k+"rss1", func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) })
		}
		g0, _ := t.get("churn/switchboard/gor0")
		g1, _ := t.get("churn/switchboard/gor1")
		h0, _ := t.get("churn/switchboard/heap0")
		h1, _ := t.get("churn/switchboard/heap1")
		row(fmt.Sprintf("churn (%d connect/subscribe/disconnect cycles)", t.o.churnCycles), "goroutines and heap back to baseline", c("switchboard"), "", c("gqlgen"), "", "", verdict(g1 <= g0 && h1 <= h0*1.25+(1<<20), true))
	}
	if _, ok := t.get("datasize/list1"); ok {
		l0, _ := t.get("datasize/list0")
		l1, _ := t.get("datasize/list1")
		h0, _ := t.get("datasize/http0")
		h1, _ := t.get("datasize/http1")
		s0, _ := t.get("datasize/start0")
		s1, _ := t.get("datasize/start1")
		n0, _ := t.get("datasize/n0")
		n1, _ := t.get("datasize/n1")
		us := func(v float64) string { return fmt.Sprintf("%.1f µs", v/float64(time.Microsecond)) }
		row(fmt.Sprintf("data size: one workspace's list at %.0f integrations vs %.0f; start-up", n1, n0), "≤ 1.2×; ≤ 1 s",
			fmt.Sprintf("list in process %s vs %s, over HTTP p50 %s vs %s; start-up %s vs %s", us(l1), us(l0), ms(h1), ms(h0), ms(s1), ms(s0)),
			"", "", "", fmt.Sprintf("%.2f× in process, %.2f× over HTTP", l1/l0, h1/h0), verdict(l1 <= 1.2*l0 && s1 <= float64(time.Second), true))
	} else {
		row("data size: one workspace's list at 1M integrations vs 1k; start-up", "≤ 1.2×; ≤ 1 s", "go -C cmd/switchboard-load run . datasize", "", "", "", "", "—")
	}
	if v, ok := t.get("resume/switchboard/total"); ok {
		res := func(s string) string {
			k := "resume/" + s + "/"
			if _, ok := t.get(k + "total"); !ok {
				return "—"
			}
			n, _ := t.get(k + "resumes")
			runs := len(t.figures[k+"total"])
			return t.cell(k+"total", ms) + fmt.Sprintf(" (median of %d run(s) × %.0f resumes; resumes from ", runs, n) + t.cell(k+"min", ms) + " to " + t.cell(k+"max", ms) + "; first event after " + t.cell(k+"first", ms) + ")"
		}
		n, _ := t.get("resume/switchboard/events")
		_, rs := t.ratio("resume/switchboard/total", "resume/bare/total")
		if rs != "—" {
			rs += " bare"
		}
		if _, gs := t.ratio("resume/gqlgen/total", "resume/bare/total"); gs != "—" {
			rs += " (gqlgen " + gs + ")"
		}
		row(fmt.Sprintf("resume over a websocket: subscribe → %.0fth replayed event arrived", n), "≤ 100 ms", res("switchboard"), res("bare"), res("gqlgen"), "", rs, verdict(v <= float64(100*time.Millisecond), n >= 10000)) // the target is for 10,000
	}
	row("resume in process: replay 10,000 events", "≤ 100 ms", "go test -bench BenchmarkReplay10000 ./fanout", "", "", "", "", "see BENCHMARKS.md")
	var missing []string
	for k, v := range t.figures {
		if strings.HasSuffix(k, "/missing") {
			if m, _ := t.get(k); m > 0 {
				missing = append(missing, fmt.Sprintf("%s: %.0f", strings.TrimSuffix(k, "/missing"), m))
			}
		}
		_ = v
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		fmt.Fprintf(w, "\nsubscriptions that never received the warm-up event (median): %s\n", strings.Join(missing, "; "))
	}
	for _, n := range t.notes {
		fmt.Fprintln(w, "\n"+n)
	}
	if _, ok := t.get("resume/switchboard/total"); ok {
		fmt.Fprintln(w, "\nResume: the gateway replays from its bbolt changelog (each event committed by a configureIntegration mutation); the bare-write baseline writes its last 10,000 events from memory, pre-serialized, one frame each, and the stock gqlgen baseline queues them from memory into the subscriber's channel. The GraphQL Yoga peer keeps no history, so it has no resume figure.")
	}
	fmt.Fprintln(w, "\nLatency runs from the event's `at` to its arrival at the client. The gateway stamps `at` before its durable commit, so its latencies include the commit (bbolt DB.Batch and fsync; \"publish answered in\" is the mutation's round trip); the baselines stamp it when they start publishing and write nothing to disk. deliveries/s counts every delivery from the first publish to the last arrival.")
}

func idle2(t *table, k string) string {
	return t.cell(k+"rss", func(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }) + " and " +
		t.cell(k+"goroutines", func(v float64) string { return fmt.Sprintf("%.2f goroutines", v) }) + " per socket"
}
