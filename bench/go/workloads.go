package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

// bench is run-wide state: the configuration, the unique key prefix of this run and an untimed
// control client used for resets, final checks and cleanup (never counted).
type bench struct {
	cfg     config
	base    string // lb/go-<pid>-<nanos>; every key of the run lives under base + "/"
	control *clientv3.Client
}

// outcome is what a workload hands back to be turned into a result line.
type outcome struct {
	ops      int64
	samples  samples
	measured measured
	check    string // non-empty: why the run is not correct beyond op errors
	rss      int64  // VmRSS KiB right after the timed part, -1 when not reported
	rssIdle  int64  // VmRSS KiB after --idle-secs (W6), -1 when not reported
}

func newOutcome(ops int64) *outcome { return &outcome{ops: ops, rss: -1, rssIdle: -1} }

// newClient connects a clientv3.Client whose RPCs are counted in ctr (nil: not counted).
// clientv3's own info-level zap logging is turned down to errors so stderr stays readable.
func (b *bench) newClient(ctr *rpcCounter) (*clientv3.Client, error) {
	logCfg := logutil.DefaultZapLoggerConfig
	logCfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg := clientv3.Config{
		Endpoints:   b.cfg.endpoints,
		DialTimeout: 5 * time.Second,
		LogConfig:   &logCfg,
	}
	if ctr != nil {
		cfg.DialOptions = ctr.dialOptions()
	}
	return clientv3.New(cfg)
}

func (b *bench) newSession(cli *clientv3.Client) (*concurrency.Session, error) {
	return concurrency.NewSession(cli, concurrency.WithTTL(b.cfg.ttl))
}

// locker is one lock flavour: lock returns the matching unlock.
type locker interface {
	lock(ctx context.Context, s *concurrency.Session, name string) (func(context.Context) error, error)
}

// recipeLock is etcd's client-side recipe (concurrency.Mutex on KV/Txn/Watch). A fresh Mutex
// per cycle: a Mutex value remembers its own key, and the Rust bench also starts every cycle
// from the name alone.
type recipeLock struct{}

func (recipeLock) lock(ctx context.Context, s *concurrency.Session, name string) (func(context.Context) error, error) {
	m := concurrency.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return m.Unlock, nil
}

// serviceLock is the server-side v3lockpb Lock service, held under the session's lease.
type serviceLock struct{}

func (serviceLock) lock(ctx context.Context, s *concurrency.Session, name string) (func(context.Context) error, error) {
	lc := v3lockpb.NewLockClient(s.Client().ActiveConnection())
	resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(name), Lease: int64(s.Lease())})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		_, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: resp.Key})
		return err
	}, nil
}

func lockerFor(flavour string) locker {
	if flavour == "service" {
		return serviceLock{}
	}
	return recipeLock{}
}

// parallel runs fn(0..n-1) on at most limit goroutines and returns the first error.
// Used only for untimed set-up and teardown (opening clients and sessions, seeding keys).
func parallel(n, limit int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	if limit > n {
		limit = n
	}
	for w := 0; w < limit; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// runWorkers starts n goroutines, waits until all are ready, starts the meter and only then
// releases them together (the barrier), so every worker's first op is inside the timed span
// and none gets a head start. It returns the merged samples and the measurement.
func runWorkers(n int, counters []*rpcCounter, body func(worker int) *samples) (samples, measured) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	var col collector
	for w := 0; w < n; w++ {
		ready.Add(1)
		done.Add(1)
		go func(w int) {
			defer done.Done()
			ready.Done()
			<-start
			col.add(body(w))
		}(w)
	}
	ready.Wait()
	m := startMeter(counters)
	close(start)
	done.Wait()
	return col.all, m.stop()
}

// sequential times ops calls of cycle on one goroutine: the shape of W1F, W1 and W2F.
func sequential(ctr *rpcCounter, ops int, cycle func(i int) error) (samples, measured) {
	s := samples{latencies: make([]time.Duration, 0, ops)}
	m := startMeter([]*rpcCounter{ctr})
	for i := 0; i < ops; i++ {
		t0 := time.Now()
		err := cycle(i)
		s.record(time.Since(t0), err)
	}
	return s, m.stop()
}

// deletePrefix removes every key under prefix with the control client (untimed, best effort,
// with its own deadline so it also runs after a workload timed out).
func (b *bench) deletePrefix(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = b.control.Delete(ctx, prefix, clientv3.WithPrefix())
}

// readCounter reads a decimal counter; a missing key reads as 0, like the Rust bench.
func readCounter(ctx context.Context, cli *clientv3.Client, key string) (int64, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench counter %s holds a non-number %q", key, resp.Kvs[0].Value)
	}
	return v, nil
}

// increment is the critical section: KV/Range of the counter, then KV/Put of value+1.
func increment(ctx context.Context, cli *clientv3.Client, key string) error {
	v, err := readCounter(ctx, cli, key)
	if err != nil {
		return err
	}
	_, err = cli.Put(ctx, key, strconv.FormatInt(v+1, 10))
	return err
}

// checkCounter is the final, untimed check of a counter workload.
func (b *bench) checkCounter(key string, want int64) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := readCounter(ctx, b.control, key)
	if err != nil {
		return "reading the counter: " + err.Error()
	}
	if got != want {
		return fmt.Sprintf("counter is %d, expected %d", got, want)
	}
	return ""
}

// clientSet is the clients (each with its counter) and sessions a workload opened.
type clientSet struct {
	clients  []*clientv3.Client
	counters []*rpcCounter
	sessions []*concurrency.Session
}

// openClients opens n clients, each with its own connection, counter and session, in parallel
// (untimed; W2 with 256 contenders would otherwise spend long in set-up).
func (b *bench) openClients(n int) (*clientSet, error) {
	cs := &clientSet{
		clients:  make([]*clientv3.Client, n),
		counters: make([]*rpcCounter, n),
		sessions: make([]*concurrency.Session, n),
	}
	err := parallel(n, 16, func(i int) error {
		ctr := &rpcCounter{}
		cli, err := b.newClient(ctr)
		if err != nil {
			return err
		}
		cs.clients[i], cs.counters[i] = cli, ctr
		s, err := b.newSession(cli)
		if err != nil {
			return err
		}
		cs.sessions[i] = s
		return nil
	})
	if err != nil {
		cs.close()
		return nil, err
	}
	return cs, nil
}

// close revokes the sessions (so no lock key outlives the workload) and closes the clients.
func (cs *clientSet) close() {
	_ = parallel(len(cs.sessions), 32, func(i int) error {
		if cs.sessions[i] != nil {
			_ = cs.sessions[i].Close()
		}
		return nil
	})
	for _, cli := range cs.clients {
		if cli != nil {
			_ = cli.Close()
		}
	}
}

// w1f: one client, ops sequential cycles of Put(base/w1f, "") + Delete(base/w1f): the two raft
// writes any lock cycle costs, the floor W1 is compared with.
func (b *bench) w1f(ctx context.Context, ops int) (*outcome, error) {
	ctr := &rpcCounter{}
	cli, err := b.newClient(ctr)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	key := b.base + "/w1f"
	o := newOutcome(int64(ops))
	o.samples, o.measured = sequential(ctr, ops, func(int) error {
		if _, err := cli.Put(ctx, key, ""); err != nil {
			return err
		}
		_, err := cli.Delete(ctx, key)
		return err
	})
	return o, nil
}

// w1: one client, one session, ops sequential cycles of lock(base/w1) + unlock; latency is
// the whole cycle.
func (b *bench) w1(ctx context.Context, lk locker, ops int) (*outcome, error) {
	cs, err := b.openClients(1)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	name, sess := b.base+"/w1", cs.sessions[0]
	o := newOutcome(int64(ops))
	o.samples, o.measured = sequential(cs.counters[0], ops, func(int) error {
		unlock, err := lk.lock(ctx, sess, name)
		if err != nil {
			return err
		}
		return unlock(ctx)
	})
	b.deletePrefix(name + "/")
	return o, nil
}

// w3: plain KV throughput, as the Rust bench's W3: one client, ops puts of 256-byte values
// to distinct keys, 16 in flight (16 goroutines sharing the client); latency is one put.
func (b *bench) w3(ctx context.Context, ops int) (*outcome, error) {
	const inFlight = 16
	ctr := &rpcCounter{}
	cli, err := b.newClient(ctr)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	prefix := b.base + "/w3/"
	defer b.deletePrefix(prefix)
	value := strings.Repeat("v", 256)
	var next atomic.Int64
	o := newOutcome(int64(ops))
	o.samples, o.measured = runWorkers(inFlight, []*rpcCounter{ctr}, func(int) *samples {
		s := &samples{}
		for {
			i := next.Add(1) - 1
			if i >= int64(ops) {
				return s
			}
			t0 := time.Now()
			_, err := cli.Put(ctx, prefix+strconv.FormatInt(i, 10), value)
			s.record(time.Since(t0), err)
		}
	})
	return o, nil
}

// w4: plain KV reads, as the Rust bench's W4: one client, ops linearizable gets of distinct
// keys, 16 in flight; each value is checked against what was written. The keys (256-byte values
// that start with the op number in hex) are written first, untimed, on the control client.
func (b *bench) w4(ctx context.Context, ops int) (*outcome, error) {
	const inFlight = 16
	ctr := &rpcCounter{}
	cli, err := b.newClient(ctr)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	prefix := b.base + "/w4/"
	defer b.deletePrefix(prefix)
	key := func(i int64) string { return prefix + strconv.FormatInt(i, 10) }
	value := func(i int64) string {
		tag := fmt.Sprintf("%016x", i)
		return tag + strings.Repeat("v", 256-len(tag))
	}
	seed := func(i int) error {
		_, err := b.control.Put(ctx, key(int64(i)), value(int64(i)))
		return err
	}
	if err := parallel(ops, inFlight, seed); err != nil {
		return nil, fmt.Errorf("seeding W4 keys: %w", err)
	}
	var next atomic.Int64
	o := newOutcome(int64(ops))
	o.samples, o.measured = runWorkers(inFlight, []*rpcCounter{ctr}, func(int) *samples {
		s := &samples{}
		for {
			i := next.Add(1) - 1
			if i >= int64(ops) {
				return s
			}
			t0 := time.Now()
			resp, err := cli.Get(ctx, key(i))
			if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != value(i)) {
				err = fmt.Errorf("W4 read of %s differs from what was written", key(i))
			}
			s.record(time.Since(t0), err)
		}
	})
	return o, nil
}

// w2f: the handoff floor. One client; untimed it writes ops keys and a counter at 0; timed,
// each op is what a W2 handoff costs without a lock: Delete(k/<i>) (the releaser's delete),
// then the critical section's Get + Put of the counter.
func (b *bench) w2f(ctx context.Context, ops int) (*outcome, error) {
	ctr := &rpcCounter{}
	cli, err := b.newClient(ctr)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	prefix := b.base + "/w2f/"
	defer b.deletePrefix(prefix)
	counter := prefix + "counter"
	key := func(i int) string { return prefix + "k/" + strconv.Itoa(i) }
	seed := func(i int) error {
		_, err := b.control.Put(ctx, key(i), "")
		return err
	}
	if err := parallel(ops, 16, seed); err != nil {
		return nil, fmt.Errorf("seeding W2F keys: %w", err)
	}
	if _, err := b.control.Put(ctx, counter, "0"); err != nil {
		return nil, err
	}
	o := newOutcome(int64(ops))
	o.samples, o.measured = sequential(ctr, ops, func(i int) error {
		if _, err := cli.Delete(ctx, key(i)); err != nil {
			return err
		}
		return increment(ctx, cli, counter)
	})
	o.check = b.checkCounter(counter, int64(ops))
	return o, nil
}

// w2: n contenders, each with its own client and session, total/n cycles each of
// lock(base/w2-n); Get + Put counter+1; unlock. Latency is the acquire wait. An in-process
// flag catches two holders at once; the final counter catches lost updates.
func (b *bench) w2(ctx context.Context, lk locker, n, total int) (*outcome, error) {
	counter := fmt.Sprintf("%s/counter-%d", b.base, n)
	name := fmt.Sprintf("%s/w2-%d", b.base, n)
	// Both flavours use the same keys, so reset the counter every run.
	if _, err := b.control.Put(ctx, counter, "0"); err != nil {
		return nil, err
	}
	defer b.deletePrefix(counter)
	defer b.deletePrefix(name + "/")
	cs, err := b.openClients(n)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	cycles := total / n
	var holding, overlap atomic.Bool
	o := newOutcome(int64(total))
	o.samples, o.measured = runWorkers(n, cs.counters, func(w int) *samples {
		sess := cs.sessions[w]
		s := &samples{latencies: make([]time.Duration, 0, cycles)}
		for c := 0; c < cycles; c++ {
			t0 := time.Now()
			unlock, err := lk.lock(ctx, sess, name)
			if err != nil {
				s.fail(err)
				continue
			}
			waited := time.Since(t0)
			if holding.Swap(true) {
				overlap.Store(true)
			}
			err = increment(ctx, sess.Client(), counter)
			holding.Store(false) // cleared before unlock: the next holder may enter right after
			if uerr := unlock(ctx); err == nil {
				err = uerr
			}
			s.record(waited, err)
		}
		return s
	})
	if overlap.Load() {
		o.check = "two holders at once seen by the in-process flag"
	} else {
		o.check = b.checkCounter(counter, int64(total))
	}
	return o, nil
}

// w6Ops is W6's op list: one op per name, and for every 5th name a twin right after it, so
// two workers take the same name at nearly the same moment and contend.
func w6Ops(names int) []int {
	ops := make([]int, 0, names+names/5+1)
	for i := 0; i < names; i++ {
		ops = append(ops, i)
		if i%5 == 0 {
			ops = append(ops, i)
		}
	}
	return ops
}

// w6: many names. 8 workers (own client + session) take the next op from a shared index;
// an op is lock + unlock of base/w6/n<i>. RSS is read right after the timed part and again
// after --idle-secs with the clients still open, to show whether per-name state is kept.
func (b *bench) w6(ctx context.Context, lk locker, names int) (*outcome, error) {
	const workers = 8
	prefix := b.base + "/w6/"
	defer b.deletePrefix(prefix)
	cs, err := b.openClients(workers)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	ops := w6Ops(names)
	var next atomic.Int64
	o := newOutcome(int64(len(ops)))
	o.samples, o.measured = runWorkers(workers, cs.counters, func(w int) *samples {
		sess := cs.sessions[w]
		s := &samples{latencies: make([]time.Duration, 0, len(ops)/workers+1)}
		for {
			i := int(next.Add(1) - 1)
			if i >= len(ops) {
				return s
			}
			name := prefix + "n" + strconv.Itoa(ops[i])
			t0 := time.Now()
			unlock, err := lk.lock(ctx, sess, name)
			if err == nil {
				err = unlock(ctx)
			}
			s.record(time.Since(t0), err)
		}
	})
	o.rss = rssKiB()
	time.Sleep(time.Duration(b.cfg.idleSecs * float64(time.Second)))
	o.rssIdle = rssKiB()
	return o, nil
}

// w7: many waiters in one process. One client, `waiters` sessions on it (opened untimed, in
// parallel), one goroutine each; after the barrier each does 2 cycles of lock(base/w7) +
// unlock. Latency is the acquire wait; the in-process flag must never see two holders.
func (b *bench) w7(ctx context.Context, lk locker, waiters int) (*outcome, error) {
	const cycles = 2
	name := b.base + "/w7"
	defer b.deletePrefix(name + "/")
	ctr := &rpcCounter{}
	cli, err := b.newClient(ctr)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	sessions := make([]*concurrency.Session, waiters)
	// Revoke every session that was opened, also when opening another one failed.
	defer func() {
		_ = parallel(waiters, 32, func(i int) error {
			if sessions[i] != nil {
				_ = sessions[i].Close()
			}
			return nil
		})
	}()
	err = parallel(waiters, 32, func(i int) error {
		s, err := b.newSession(cli)
		sessions[i] = s
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening W7 sessions: %w", err)
	}
	var holding, overlap atomic.Bool
	o := newOutcome(int64(cycles * waiters))
	o.samples, o.measured = runWorkers(waiters, []*rpcCounter{ctr}, func(w int) *samples {
		s := &samples{latencies: make([]time.Duration, 0, cycles)}
		for c := 0; c < cycles; c++ {
			t0 := time.Now()
			unlock, err := lk.lock(ctx, sessions[w], name)
			if err != nil {
				s.fail(err)
				continue
			}
			waited := time.Since(t0)
			if holding.Swap(true) {
				overlap.Store(true)
			}
			// The critical section is empty; yielding inside it gives a wrongly admitted
			// second holder a real chance to be seen by the flag.
			runtime.Gosched()
			holding.Store(false)
			s.record(waited, unlock(ctx))
		}
		return s
	})
	o.rss = rssKiB()
	if overlap.Load() {
		o.check = "two holders at once seen by the in-process flag"
	}
	return o, nil
}

// errTimeout marks a workload stopped by --timeout (its ops fail with context errors).
var errTimeout = errors.New("workload exceeded --timeout")
