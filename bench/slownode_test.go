package bench

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/tcpproxy"
	"github.com/redis/go-redis/v9"
)

// inflight is a go-redis hook that counts the commands inside a client
// right now: from the call until its reply (or error), including the wait
// for a pooled connection.
type inflight struct{ n atomic.Int64 }

func (h *inflight) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *inflight) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		defer h.n.Add(-1)
		return next(ctx, cmd)
	}
}

func (h *inflight) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		defer h.n.Add(-1)
		return next(ctx, cmds)
	}
}

// BenchmarkS7SlowNode (issue 10): scenario 1's loop, one goroutine taking
// fresh keys back to back, with 1 of 5 nodes behind a TCP proxy adding 5ms
// each way. A library that answers at a majority keeps its pace, but each
// Lock+Release leaves calls to the slow node behind; this measures how many
// pile up. The calls inside the slow node's client are sampled every
// millisecond during the run; after it, the drain is the time until none is
// left. Pool timeouts: go-redis's count for the slow node's client (a call
// that waited PoolTimeout for a connection and failed). Keys left: as in
// scenario 4.
func BenchmarkS7SlowNode(b *testing.B) {
	const delay = 5 * time.Millisecond
	as := addrs(b, 5)
	for _, l := range libs {
		if l.single {
			continue
		}
		b.Run(fmt.Sprintf("lib=%s/nodes=5", l.name), func(b *testing.B) {
			p, err := tcpproxy.New(as[4])
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			p.SetDelay(delay, delay)
			via := append(slices.Clone(as[:4]), p.Addr())
			cs := newClients(b, via)
			slow := cs[4]
			var in inflight
			slow.AddHook(&in)
			lk := l.new(b, cs, baseCfg)
			prefix := keyPrefix("s7", l.name)
			warm(b, lk, prefix, 1)
			for in.n.Load() > 0 { // the warm-up's calls
				time.Sleep(time.Millisecond)
			}
			timeouts0 := slow.PoolStats().Timeouts

			// Sample the calls in flight every millisecond; keep the
			// largest of each 100ms window for the log.
			stopSampling := make(chan struct{})
			sampled := make(chan []int64)
			go func() {
				var windows []int64
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				start := time.Now()
				for {
					select {
					case <-stopSampling:
						sampled <- windows
						return
					case now := <-tick.C:
						w := int(now.Sub(start) / (100 * time.Millisecond))
						for len(windows) <= w {
							windows = append(windows, 0)
						}
						windows[w] = max(windows[w], in.n.Load())
					}
				}
			}()

			serial(b, lk, prefix)
			ops := b.N
			end := time.Now()
			close(stopSampling)
			windows := <-sampled
			atEnd := in.n.Load()
			for in.n.Load() > 0 && time.Since(end) < 60*time.Second {
				time.Sleep(time.Millisecond)
			}
			drain := time.Since(end)
			if n := in.n.Load(); n > 0 {
				b.Logf("%d calls still in flight to the slow node 60s after the run", n)
			}
			timeouts := slow.PoolStats().Timeouts - timeouts0
			fast, slowLeft := settledKeys(b, newClients(b, as), prefix, 4)

			b.ReportMetric(float64(slices.Max(append(windows, atEnd))), "inflight-max")
			b.ReportMetric(float64(atEnd), "inflight-end")
			b.ReportMetric(float64(drain.Microseconds())/1000, "drain-ms")
			b.ReportMetric(float64(timeouts), "pool-timeouts")
			b.ReportMetric(float64(fast+slowLeft), "keys-left")
			var line strings.Builder
			for i, v := range windows {
				if i == 40 {
					line.WriteString(" …")
					break
				}
				fmt.Fprintf(&line, " %d", v)
			}
			b.Logf("%d ops; calls in flight to the slow node, largest per 100ms:%s; at the end %d, drained in %v; pool timeouts %d; keys left %d (slow node %d)",
				ops, line.String(), atEnd, drain.Round(time.Millisecond), timeouts, fast+slowLeft, slowLeft)
		})
	}
}
