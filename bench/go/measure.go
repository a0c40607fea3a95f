package main

import (
	"context"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// rpcCounter counts what one clientv3.Client sends: unary RPCs started and messages sent on
// its streams (Watch, LeaseKeepAlive). One counter per client, so a workload sums exactly the
// clients it opened and the untimed control client is never counted.
type rpcCounter struct {
	unary   atomic.Int64
	streams atomic.Int64
}

// dialOptions returns the interceptors that feed c. They are added with the Chain variants:
// clientv3 installs its own retry interceptors with WithUnaryInterceptor/WithStreamInterceptor,
// and a second WithUnaryInterceptor would silently replace them. Chained interceptors run
// inside clientv3's, so a retried call is counted once per attempt, as it is on the wire.
func (c *rpcCounter) dialOptions() []grpc.DialOption {
	unary := func(ctx context.Context, method string, req, reply interface{},
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c.unary.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countingStream{ClientStream: s, sent: &c.streams}, nil
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unary),
		grpc.WithChainStreamInterceptor(stream),
	}
}

// countingStream counts the messages the client sends on one stream; everything else is the
// wrapped stream's own behaviour.
type countingStream struct {
	grpc.ClientStream
	sent *atomic.Int64
}

func (s *countingStream) SendMsg(m interface{}) error {
	s.sent.Add(1)
	return s.ClientStream.SendMsg(m)
}

// cpuTime is this process's user + system CPU time so far (getrusage(RUSAGE_SELF)).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssKiB is VmRSS of this process from /proc/self/status, or -1 when it cannot be read.
func rssKiB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(strings.TrimPrefix(line, "VmRSS:")) // "12345 kB"
			if len(fields) > 0 {
				if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	return -1
}

// meter holds the snapshots taken when a workload's timed part starts.
type meter struct {
	counters       []*rpcCounter
	unary, streams int64
	cpu            time.Duration
	started        time.Time
}

// measured is what changed between meter start and stop, summed over the workload's clients.
type measured struct {
	secs           float64
	unary, streams int64
	cpu            time.Duration
}

func sumCounters(counters []*rpcCounter) (unary, streams int64) {
	for _, c := range counters {
		unary += c.unary.Load()
		streams += c.streams.Load()
	}
	return unary, streams
}

func startMeter(counters []*rpcCounter) *meter {
	m := &meter{counters: counters, cpu: cpuTime()}
	m.unary, m.streams = sumCounters(counters)
	m.started = time.Now() // last, so the snapshots above are not inside the timed span
	return m
}

func (m *meter) stop() measured {
	secs := time.Since(m.started).Seconds()
	cpu := cpuTime() - m.cpu
	unary, streams := sumCounters(m.counters)
	return measured{secs: secs, unary: unary - m.unary, streams: streams - m.streams, cpu: cpu}
}

// samples are the latencies of the successful ops and the failures, of one worker or (after
// merge) of a whole workload. Failed ops add no latency, as in the Rust bench.
type samples struct {
	latencies []time.Duration
	errors    int64
	firstErr  string
}

func (s *samples) record(latency time.Duration, err error) {
	if err != nil {
		s.fail(err)
		return
	}
	s.latencies = append(s.latencies, latency)
}

func (s *samples) fail(err error) {
	s.errors++
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
}

func (s *samples) merge(o *samples) {
	s.latencies = append(s.latencies, o.latencies...)
	s.errors += o.errors
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
}

// collector merges the samples of concurrent workers.
type collector struct {
	mu  sync.Mutex
	all samples
}

func (c *collector) add(s *samples) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all.merge(s)
}

// percentileMs is the nearest-rank percentile p (0..1) of sorted latencies, in ms; 0 if none.
func percentileMs(sorted []time.Duration, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return float64(sorted[rank-1]) / float64(time.Millisecond)
}

func (s *samples) percentilesMs() (p50, p99 float64) {
	sort.Slice(s.latencies, func(i, j int) bool { return s.latencies[i] < s.latencies[j] })
	return percentileMs(s.latencies, 0.50), percentileMs(s.latencies, 0.99)
}
