// Command lockbench is the Go counterpart of etcd-lock's Rust lockbench: the same workloads,
// key layout and JSON result lines, but run with etcd's own Go client (clientv3 3.4 and its
// concurrency.Mutex recipe, or the v3lockpb Lock service), so both clients can be compared in
// one run on one machine. See README.md next to this file.
//
// Exit status: 0 when every workload was correct, 1 when one was not, 2 on bad arguments,
// 3 when the cluster could not be reached.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

const clientName = "go-clientv3"

// allWorkloads is also the order workloads run in: each floor before what is compared with it
// (W1F before W1, W2F before W2) and W1 before W6, whose ratio_to_w1 needs it.
var allWorkloads = []string{"W1F", "W1", "W2F", "W2", "W3", "W4", "W6", "W7"}

// lockWorkloads run once per flavour; the others are plain KV and print impl "kv".
var lockWorkloads = map[string]bool{"W1": true, "W2": true, "W6": true, "W7": true}

type config struct {
	endpoints  []string
	workloads  []string
	flavours   []string
	contenders []int
	names      int
	waiters    int
	ops        int // 0: each workload's own size (2000)
	ttl        int
	idleSecs   float64
	timeout    time.Duration
}

const defaultOps = 2000

// defaultW3Ops is W3's and W4's own size, as in the Rust bench (20000 puts, 20000 gets).
const defaultW3Ops = 20000

func parseArgs(args []string) (config, error) {
	fs := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "etcd endpoints, comma separated")
	workloads := fs.String("workload", "all", "comma list of W1F,W1,W2F,W2,W3,W4,W6,W7, or all")
	via := fs.String("via", "both", "lock flavour: recipe (concurrency.Mutex), service (v3lockpb) or both")
	contenders := fs.String("contenders", "8", "W2 workers; a comma list (8,64,256) runs W2 once per value")
	names := fs.Int("names", 10000, "W6 lock names")
	waiters := fs.Int("waiters", 1000, "W7 waiting sessions on one client")
	ops := fs.Int("ops", 0, "override the op count of W1F, W1, W2F and W2 (default 2000)")
	ttl := fs.Int("ttl", 10, "session TTL, seconds")
	idle := fs.Float64("idle-secs", 35, "W6: seconds to idle before the second RSS reading")
	timeout := fs.Duration("timeout", 120*time.Second, "upper bound on one workload run")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := config{names: *names, waiters: *waiters, ops: *ops, ttl: *ttl, idleSecs: *idle, timeout: *timeout}
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.endpoints = append(cfg.endpoints, e)
		}
	}
	if len(cfg.endpoints) == 0 {
		return cfg, errors.New("--endpoints: at least one endpoint is required")
	}
	var err error
	if cfg.workloads, err = parseWorkloads(*workloads); err != nil {
		return cfg, err
	}
	switch strings.ToLower(strings.TrimSpace(*via)) {
	case "both":
		cfg.flavours = []string{"recipe", "service"}
	case "recipe", "service":
		cfg.flavours = []string{strings.ToLower(strings.TrimSpace(*via))}
	default:
		return cfg, fmt.Errorf("--via %q: expected recipe, service or both", *via)
	}
	for _, c := range strings.Split(*contenders, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("--contenders: %q is not a positive number", c)
		}
		cfg.contenders = append(cfg.contenders, n)
	}
	if cfg.names < 1 || cfg.waiters < 1 || cfg.ops < 0 || cfg.ttl < 1 || cfg.idleSecs < 0 || cfg.timeout <= 0 {
		return cfg, errors.New("--names, --waiters, --ttl and --timeout must be positive; --ops and --idle-secs not negative")
	}
	return cfg, nil
}

// parseWorkloads accepts "all" or a comma list in any case and returns it in run order.
func parseWorkloads(list string) ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(list), "all") {
		return allWorkloads, nil
	}
	asked := map[string]bool{}
	for _, w := range strings.Split(list, ",") {
		w = strings.ToUpper(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		known := false
		for _, k := range allWorkloads {
			known = known || k == w
		}
		if !known {
			return nil, fmt.Errorf("--workload %q: expected W1F, W1, W2F, W2, W3, W4, W6, W7 or all", w)
		}
		asked[w] = true
	}
	var out []string
	for _, k := range allWorkloads {
		if asked[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--workload: nothing to run")
	}
	return out, nil
}

// result is one JSON line.
type result struct {
	impl, workload        string
	ops                   int64
	secs, opsPerS         float64
	p50, p99              float64
	correct               bool
	rpcsPerOp, unaryPerOp float64
	cpuUsPerOp            float64
	contenders            int      // W2 only
	ratioToFloor          *float64 // W1 over W1F, W2 over W2F
	ratioToW1             *float64 // W6 over W1 of the same flavour
	names, waiters        int      // W6, W7
	rss, rssIdle          int64    // -1: not reported
	errors                int64
	detail                string
}

func fromOutcome(workload, impl string, o *outcome) *result {
	p50, p99 := o.samples.percentilesMs()
	ops := float64(o.ops)
	if ops < 1 {
		ops = 1
	}
	m := o.measured
	detail := o.check
	if detail == "" {
		detail = o.samples.firstErr
	}
	r := &result{
		impl: impl, workload: workload, ops: o.ops, secs: m.secs,
		p50: p50, p99: p99,
		correct:    o.samples.errors == 0 && detail == "",
		rpcsPerOp:  float64(m.unary+m.streams) / ops,
		unaryPerOp: float64(m.unary) / ops,
		cpuUsPerOp: float64(m.cpu.Microseconds()) / ops,
		rss:        o.rss, rssIdle: o.rssIdle,
		errors: o.samples.errors, detail: detail,
	}
	if m.secs > 0 {
		r.opsPerS = float64(o.ops) / m.secs
	}
	return r
}

// failed is the line of a workload that could not even run (set-up failed).
func failed(workload, impl string, err error) *result {
	return &result{impl: impl, workload: workload, errors: 1, detail: err.Error(), rss: -1, rssIdle: -1}
}

// num formats a JSON number with fixed decimals, or null when it is not finite.
func num(x float64, decimals int) string {
	if x != x || x > 1e300 || x < -1e300 {
		return "null"
	}
	return strconv.FormatFloat(x, 'f', decimals, 64)
}

// json is the result line: the fields of the Rust bench in its order (bytes_per_op is not
// measured here, so null), then the extras that apply.
func (r *result) json() string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"client":%q,"impl":%q,"workload":%q,"ops":%d,"secs":%s,"ops_per_s":%s,`+
		`"p50_ms":%s,"p99_ms":%s,"correct":%t,"rpcs_per_op":%s,"bytes_per_op":null,"cpu_us_per_op":%s`,
		clientName, r.impl, r.workload, r.ops, num(r.secs, 4), num(r.opsPerS, 1),
		num(r.p50, 3), num(r.p99, 3), r.correct, num(r.rpcsPerOp, 3), num(r.cpuUsPerOp, 2))
	if r.contenders > 0 {
		fmt.Fprintf(&b, `,"contenders":%d`, r.contenders)
	}
	if r.ratioToFloor != nil {
		fmt.Fprintf(&b, `,"ratio_to_floor":%s`, num(*r.ratioToFloor, 3))
	}
	if r.ratioToW1 != nil {
		fmt.Fprintf(&b, `,"ratio_to_w1":%s`, num(*r.ratioToW1, 3))
	}
	if r.names > 0 {
		fmt.Fprintf(&b, `,"names":%d`, r.names)
	}
	if r.waiters > 0 {
		fmt.Fprintf(&b, `,"waiters":%d`, r.waiters)
	}
	if r.rss >= 0 {
		fmt.Fprintf(&b, `,"rss_kib":%d`, r.rss)
	}
	if r.rssIdle >= 0 {
		fmt.Fprintf(&b, `,"rss_after_idle_kib":%d`, r.rssIdle)
	}
	fmt.Fprintf(&b, `,"unary_per_op":%s`, num(r.unaryPerOp, 3))
	if r.errors > 0 {
		fmt.Fprintf(&b, `,"errors":%d`, r.errors)
	}
	if r.detail != "" {
		d, _ := json.Marshal(r.detail) // JSON string escaping
		fmt.Fprintf(&b, `,"detail":%s`, d)
	}
	b.WriteString("}")
	return b.String()
}

// table is the human summary for stderr, with a line per failure reason.
func table(results []*result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-8s %5s %6s %8s %9s %8s %8s %3s %7s %9s %7s %9s\n",
		"load", "impl", "N", "ops", "secs", "ops/s", "p50 ms", "p99 ms", "ok", "rpc/op", "cpu us/op", "ratio", "rss KiB")
	for _, r := range results {
		n, ratio, rss, ok := "-", "-", "-", "yes"
		if r.contenders > 0 {
			n = strconv.Itoa(r.contenders)
		} else if r.names > 0 {
			n = strconv.Itoa(r.names)
		} else if r.waiters > 0 {
			n = strconv.Itoa(r.waiters)
		}
		if r.ratioToFloor != nil {
			ratio = fmt.Sprintf("%.3f", *r.ratioToFloor)
		} else if r.ratioToW1 != nil {
			ratio = fmt.Sprintf("%.3f", *r.ratioToW1)
		}
		if r.rss >= 0 {
			rss = strconv.FormatInt(r.rss, 10)
			if r.rssIdle >= 0 {
				rss += "/" + strconv.FormatInt(r.rssIdle, 10)
			}
		}
		if !r.correct {
			ok = "NO"
		}
		fmt.Fprintf(&b, "%-4s %-8s %5s %6d %8.3f %9.1f %8.3f %8.3f %3s %7.3f %9.2f %7s %9s\n",
			r.workload, r.impl, n, r.ops, r.secs, r.opsPerS, r.p50, r.p99, ok, r.rpcsPerOp, r.cpuUsPerOp, ratio, rss)
	}
	b.WriteString("ratio: W1/W1F and W2/W2F ops/s (floor), W6/W1 of the same impl; rss: after the timed part[/after idle]\n")
	for _, r := range results {
		if !r.correct {
			fmt.Fprintf(&b, "%s %s: not correct (%d failed ops): %s\n", r.workload, r.impl, r.errors, r.detail)
		}
	}
	return b.String()
}

func ratio(x, base float64) *float64 {
	if base <= 0 {
		return nil
	}
	v := x / base
	return &v
}

// runOne runs one workload run under --timeout and turns it into a result line.
func (b *bench) runOne(workload, flavour string, contenders int) *result {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.timeout)
	defer cancel()
	ops := b.cfg.ops
	if ops == 0 {
		ops = defaultOps
	}
	impl := "kv"
	if lockWorkloads[workload] {
		impl = flavour
	}
	lk := lockerFor(flavour)
	var (
		o   *outcome
		err error
	)
	switch workload {
	case "W1F":
		o, err = b.w1f(ctx, ops)
	case "W1":
		o, err = b.w1(ctx, lk, ops)
	case "W2F":
		o, err = b.w2f(ctx, ops)
	case "W3":
		if b.cfg.ops == 0 {
			ops = defaultW3Ops
		}
		o, err = b.w3(ctx, ops)
	case "W4":
		if b.cfg.ops == 0 {
			ops = defaultW3Ops
		}
		o, err = b.w4(ctx, ops)
	case "W2":
		total := (ops + contenders - 1) / contenders * contenders // a whole number of cycles each
		o, err = b.w2(ctx, lk, contenders, total)
	case "W6":
		o, err = b.w6(ctx, lk, b.cfg.names)
	case "W7":
		o, err = b.w7(ctx, lk, b.cfg.waiters)
	}
	if err != nil {
		r := failed(workload, impl, err)
		r.contenders = contenders
		return r
	}
	// Ops that failed because the deadline passed are named as such; a deadline that only
	// passed during an untimed part (e.g. W6's idle sleep) is no failure.
	if o.check == "" && o.samples.errors > 0 && ctx.Err() != nil {
		o.check = fmt.Sprintf("%v: %s", errTimeout, o.samples.firstErr)
	}
	r := fromOutcome(workload, impl, o)
	r.contenders = contenders
	switch workload {
	case "W6":
		r.names = b.cfg.names
	case "W7":
		r.waiters = b.cfg.waiters
	}
	return r
}

func main() {
	cfg, err := parseArgs(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lockbench:", err)
		}
		os.Exit(2)
	}
	b := &bench{cfg: cfg, base: fmt.Sprintf("lb/go-%d-%d", os.Getpid(), time.Now().UnixNano())}
	if b.control, err = b.newClient(nil); err != nil {
		fmt.Fprintln(os.Stderr, "lockbench: connecting:", err)
		os.Exit(3)
	}
	// clientv3.New does not wait for a connection; one read proves the cluster answers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = b.control.Get(ctx, b.base+"/")
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lockbench: cannot reach %s: %v\n", strings.Join(cfg.endpoints, ","), err)
		os.Exit(3)
	}

	var results []*result
	floor := map[string]float64{} // W1F / W2F ops/s of this run
	w1 := map[string]float64{}    // W1 ops/s per flavour
	emit := func(r *result) {
		results = append(results, r)
		fmt.Println(r.json()) // one line at a time, so a long run shows progress
	}
	for _, w := range cfg.workloads {
		flavours := []string{""}
		if lockWorkloads[w] {
			flavours = cfg.flavours
		}
		for _, f := range flavours {
			switch w {
			case "W2":
				for _, n := range cfg.contenders {
					r := b.runOne(w, f, n)
					if fl, ok := floor["W2F"]; ok {
						r.ratioToFloor = ratio(r.opsPerS, fl)
					}
					emit(r)
				}
			default:
				r := b.runOne(w, f, 0)
				switch w {
				case "W1F", "W2F":
					floor[w] = r.opsPerS
				case "W1":
					w1[f] = r.opsPerS
					if fl, ok := floor["W1F"]; ok {
						r.ratioToFloor = ratio(r.opsPerS, fl)
					}
				case "W6":
					if base, ok := w1[f]; ok {
						r.ratioToW1 = ratio(r.opsPerS, base)
					}
				}
				emit(r)
			}
		}
	}
	b.deletePrefix(b.base + "/")
	_ = b.control.Close()

	fmt.Fprint(os.Stderr, table(results))
	for _, r := range results {
		if !r.correct {
			os.Exit(1)
		}
	}
}
