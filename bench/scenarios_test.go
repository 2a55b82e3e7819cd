package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/tcpproxy"
	"github.com/redis/go-redis/v9"
)

// Scenarios of issue 4. Every scenario runs every library in the same
// process, one after another; sub-benchmarks are named lib=<name>/nodes=<n>.
// Custom metrics (b.ReportMetric):
//
//	ops/s          operations (Lock+Release) per second
//	p50-us, p99-us latency of one Lock+Release, µs
//	acq/s          acquisitions per second (scenario 3)
//	handoff-p50-us one worker's Release call → another worker's Lock returning
//	jain           Jain's fairness index over the workers' shares (1 = equal)
//	min-share-%    the smallest worker's share of acquisitions
//	max-share-x    the busiest worker's share over the fair share (1 = fair)
//	wait-p50-us    one Lock call in scenario 3, from its start to the lock
//	wait-max-us    the longest such wait of any worker in the run
//	overlaps       acquisitions while another worker believed it held the lock
//	keys-left      keys of the run still on the nodes after a settle (scenario 4)
//	B/lock, cpu-us/lock/s, goroutines/lock, lost (scenario 6)

const warmOps = 50

// warm dials connections and loads scripts before timing starts.
func warm(b *testing.B, l locker, prefix string, par int) {
	b.Helper()
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for w := range par {
		wg.Go(func() {
			kg := newKeygen(prefix + "warm:" + strconv.Itoa(w) + ":")
			for range warmOps {
				h, err := l.lock(b.Context(), kg.next())
				if err == nil {
					err = h.release(b.Context())
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		b.Fatalf("warm-up: %v", *p)
	}
}

// serial is scenario 1's loop: one goroutine, Lock+Release on a fresh key
// each iteration. It returns the key prefix it used.
func serial(b *testing.B, l locker, prefix string) {
	b.Helper()
	warm(b, l, prefix, 1)
	ctx := b.Context()
	kg := newKeygen(prefix)
	h := new(hist)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		key := kg.next()
		t0 := time.Now()
		lk, err := l.lock(ctx, key)
		if err != nil {
			b.Fatalf("lock %s: %v", key, err)
		}
		if err := lk.release(ctx); err != nil {
			b.Fatalf("release %s: %v", key, err)
		}
		h.add(time.Since(t0))
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(h.n)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(us(h.quantile(0.50)), "p50-us")
	b.ReportMetric(us(h.quantile(0.99)), "p99-us")
}

func nodesFor(l lib, n int) int {
	if l.single {
		return 1
	}
	return n
}

// BenchmarkS1Uncontended: 1 goroutine, fresh key each time, 5 nodes
// (redislock: 1 node).
// dlock-fenced (WithFencing) runs right after dlock; after its loop it reads
// the run's fencing counters on every node (see fenceCounters).
func BenchmarkS1Uncontended(b *testing.B) {
	as := addrs(b, 5)
	for _, l := range s1Libs {
		n := nodesFor(l, 5)
		b.Run(fmt.Sprintf("lib=%s/nodes=%d", l.name, n), func(b *testing.B) {
			cs := newClients(b, as[:n])
			prefix := keyPrefix("s1", l.name)
			serial(b, l.new(b, cs, baseCfg), prefix)
			if l.name == fencedLib.name {
				keys, above, missing := fenceCounters(b, cs, prefix)
				b.ReportMetric(float64(keys), "fenced-keys")
				b.ReportMetric(float64(above), "keys-counter>1")
				b.ReportMetric(float64(missing), "keys-counter-missing")
			}
		})
	}
}

// fenceCounters reads the fencing counters of the keys under prefix (the
// run's timed keys and its warm-up keys) on every node, then deletes them:
// a counter has no TTL, and each fresh key leaves one per node. It returns
// how many keys have a counter on some node; on how many of them some
// node's counter is above 1; and on how many some node has no counter.
//
// This bounds how often the second (fence) round ran without looking into
// the library: every key is fresh, so a node's grant finds no counter and
// returns 1; the fence round runs only when the granting nodes' counters
// disagree, that is when one returned 2 or more (a retried attempt granted
// twice by one node), and it raises counters to that token. Counters never
// decrease, so where every node's counter is 1 (or absent) every grant
// returned 1 and no fence round ran: above is an upper bound on the fence
// rounds. A missing counter means the acquire never ran on that node (not
// sent, or not carried out): it takes no part in the token.
func fenceCounters(b *testing.B, cs []*redis.Client, prefix string) (keys, above, missing int) {
	b.Helper()
	ctx := context.Background()
	// RedisNode's counter for a key without braces is "dlock:fence:{KEY}".
	pattern := "dlock:fence:{" + prefix + "*"
	type state struct{ seen, above int }
	st := map[string]*state{}
	for _, c := range cs {
		var cursor uint64
		for {
			ks, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				b.Fatal(err)
			}
			if len(ks) > 0 {
				vs, err := c.MGet(ctx, ks...).Result()
				if err != nil {
					b.Fatal(err)
				}
				for j, k := range ks {
					s := st[k]
					if s == nil {
						s = new(state)
						st[k] = s
					}
					s.seen++
					if v, _ := vs[j].(string); v != "1" {
						s.above++
					}
				}
				// Keys already returned may be deleted during a SCAN.
				if err := c.Unlink(ctx, ks...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	for _, s := range st {
		if s.above > 0 {
			above++
		}
		if s.seen < len(cs) {
			missing++
		}
	}
	return len(st), above, missing
}

// BenchmarkS2Parallel: 64 goroutines on distinct keys, 5 nodes.
func BenchmarkS2Parallel(b *testing.B) {
	const workers = 64
	as := addrs(b, 5)
	for _, l := range libs {
		n := nodesFor(l, 5)
		b.Run(fmt.Sprintf("lib=%s/nodes=%d", l.name, n), func(b *testing.B) {
			lk := l.new(b, newClients(b, as[:n]), baseCfg)
			prefix := keyPrefix("s2", l.name)
			warm(b, lk, prefix, workers)
			ctx := b.Context()
			hs := make([]hist, workers)
			work := make(chan struct{})
			var firstErr atomic.Pointer[error]
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					kg := newKeygen(prefix + strconv.Itoa(w) + ":")
					for range work {
						key := kg.next()
						t0 := time.Now()
						h, err := lk.lock(ctx, key)
						if err == nil {
							err = h.release(ctx)
						}
						if err != nil {
							firstErr.CompareAndSwap(nil, &err)
							continue
						}
						hs[w].add(time.Since(t0))
					}
				})
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			elapsed := time.Since(start) // includes the last operations in flight
			if p := firstErr.Load(); p != nil {
				b.Fatal(*p)
			}
			var all hist
			for i := range hs {
				all.merge(&hs[i])
			}
			b.ReportMetric(float64(all.n)/elapsed.Seconds(), "ops/s")
			b.ReportMetric(us(all.quantile(0.50)), "p50-us")
			b.ReportMetric(us(all.quantile(0.99)), "p99-us")
		})
	}
}

// BenchmarkS3Contended: 8 workers on one key, each holding ~1ms and pausing
// 5ms after Release. One b.Loop iteration = one acquisition. dlock-defaults
// runs too: dlock with its own retry options (see defaultsLib).
func BenchmarkS3Contended(b *testing.B) {
	const (
		workers = 8
		hold    = time.Millisecond
		pause   = 5 * time.Millisecond
	)
	as := addrs(b, 5)
	for _, l := range s3Libs {
		n := nodesFor(l, 5)
		b.Run(fmt.Sprintf("lib=%s/nodes=%d", l.name, n), func(b *testing.B) {
			c := baseCfg
			c.retryLimit = -1
			lk := l.new(b, newClients(b, as[:n]), c)
			prefix := keyPrefix("s3", l.name)
			warm(b, lk, prefix, 1)
			key := prefix + "the-lock"
			ctx, cancel := context.WithCancel(b.Context())
			var (
				mu          sync.Mutex // guards the fields below
				lastRelease time.Time
				lastHolder  = -1
				handoff     hist
				wait        hist // one Lock call, from its start to the lock
				longest     time.Duration
				counts      [workers]int
				overlaps    int
				errs        int
				holder      atomic.Int32
			)
			acq := make(chan struct{}, 1<<16)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for ctx.Err() == nil {
						t0 := time.Now()
						h, err := lk.lock(ctx, key)
						now := time.Now()
						if err != nil {
							if ctx.Err() == nil {
								mu.Lock()
								errs++
								mu.Unlock()
							}
							continue
						}
						mu.Lock()
						if holder.Swap(int32(w+1)) != 0 {
							overlaps++
						}
						if lastHolder >= 0 && lastHolder != w {
							handoff.add(now.Sub(lastRelease))
						}
						counts[w]++
						wait.add(now.Sub(t0))
						longest = max(longest, now.Sub(t0))
						mu.Unlock()
						select {
						case acq <- struct{}{}:
						case <-ctx.Done():
						}
						time.Sleep(hold)
						mu.Lock()
						holder.Store(0)
						lastRelease, lastHolder = time.Now(), w
						mu.Unlock()
						h.release(context.WithoutCancel(ctx))
						t := time.NewTimer(pause)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
						}
					}
				})
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				<-acq
			}
			elapsed := time.Since(start)
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			var sum, sumSq float64
			minShare, total, most := math.MaxFloat64, 0, 0
			for _, k := range counts {
				total += k
				most = max(most, k)
			}
			for _, k := range counts {
				x := float64(k)
				sum += x
				sumSq += x * x
				minShare = min(minShare, 100*x/float64(total))
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "acq/s")
			b.ReportMetric(us(handoff.quantile(0.50)), "handoff-p50-us")
			b.ReportMetric(us(handoff.quantile(0.99)), "handoff-p99-us")
			b.ReportMetric(sum*sum/(workers*sumSq), "jain")
			b.ReportMetric(minShare, "min-share-%")
			b.ReportMetric(float64(most)*workers/float64(total), "max-share-x")
			b.ReportMetric(us(wait.quantile(0.50)), "wait-p50-us")
			b.ReportMetric(us(longest), "wait-max-us")
			b.ReportMetric(float64(overlaps), "overlaps")
			b.ReportMetric(float64(errs), "errors")
		})
	}
}

// BenchmarkS4SlowMinority: scenario 1 with 2 of 5 nodes behind a TCP proxy
// adding 5ms each way; afterwards, once the count settles, counts the run's keys still on
// every node.
func BenchmarkS4SlowMinority(b *testing.B) {
	const (
		slow  = 2
		delay = 5 * time.Millisecond
	)
	as := addrs(b, 5)
	for _, l := range libs {
		if l.single {
			continue // a single node is either slow or not: nothing to measure
		}
		b.Run(fmt.Sprintf("lib=%s/nodes=5", l.name), func(b *testing.B) {
			via := make([]string, len(as))
			copy(via, as)
			for i := len(as) - slow; i < len(as); i++ {
				p, err := tcpproxy.New(as[i])
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { p.Close() })
				p.SetDelay(delay, delay)
				via[i] = p.Addr()
			}
			direct := newClients(b, as)
			prefix := keyPrefix("s4", l.name)
			serial(b, l.new(b, newClients(b, via), baseCfg), prefix)
			ops := b.N
			fast, slowLeft := settledKeys(b, direct, prefix, len(as)-slow)
			b.ReportMetric(float64(fast+slowLeft), "keys-left")
			b.ReportMetric(float64(slowLeft), "keys-left-slow")
			b.ReportMetric(float64(fast+slowLeft)*1000/float64(ops), "keys-left/1k-ops")
		})
	}
}

// settledKeys counts the keys under prefix on every node once the count has
// settled: at least 1s after the run, then every 500ms until two counts
// agree, at most 5s (well inside the 10s TTL, so expiry does not hide keys).
// Nodes from slowFrom on are counted separately.
func settledKeys(b *testing.B, cs []*redis.Client, prefix string, slowFrom int) (fast, slow int) {
	b.Helper()
	count := func() (fast, slow int) {
		for i, c := range cs {
			k, err := countKeys(context.Background(), c, prefix)
			if err != nil {
				b.Fatal(err)
			}
			if i >= slowFrom {
				slow += k
			} else {
				fast += k
			}
		}
		return fast, slow
	}
	time.Sleep(time.Second)
	fast, slow = count()
	for waited := time.Second; waited < 5*time.Second; waited += 500 * time.Millisecond {
		time.Sleep(500 * time.Millisecond)
		f, s := count()
		if f == fast && s == slow {
			break
		}
		fast, slow = f, s
	}
	return fast, slow
}

// BenchmarkS5NodeCount: scenario 1 on 1, 3, 5 and 7 nodes.
func BenchmarkS5NodeCount(b *testing.B) {
	as := addrs(b, 7)
	for _, n := range []int{1, 3, 5, 7} {
		for _, l := range libs {
			if l.single && n != 1 {
				continue
			}
			b.Run(fmt.Sprintf("lib=%s/nodes=%d", l.name, n), func(b *testing.B) {
				serial(b, l.new(b, newClients(b, as[:n]), baseCfg), keyPrefix("s5", l.name))
			})
		}
	}
}

// BenchmarkS6Held holds DLOCK_BENCH_HELD (default 10,000) locks with
// auto-refresh (TTL 10s, refresh every 2s; peers: a goroutine per lock with
// a ticker) and measures, over windows of one refresh period (one b.Loop
// iteration each): live heap, goroutines and CPU per held lock.
func BenchmarkS6Held(b *testing.B) {
	const (
		refresh = 2 * time.Second
		par     = 32
	)
	locks := envInt("DLOCK_BENCH_HELD", 10000)
	as := addrs(b, 5)
	for _, l := range libs {
		n := nodesFor(l, 5)
		b.Run(fmt.Sprintf("lib=%s/nodes=%d", l.name, n), func(b *testing.B) {
			c := baseCfg
			c.refresh = refresh
			lk := l.new(b, newClients(b, as[:n]), c)
			prefix := keyPrefix("s6", l.name)
			warm(b, lk, prefix, par)
			hs := make([]held, locks)
			defer func() { // release whatever was taken, even after a failure
				var wg sync.WaitGroup
				for w := range par {
					wg.Go(func() {
						for i := w; i < locks; i += par {
							if hs[i] != nil {
								hs[i].release(context.Background())
							}
						}
					})
				}
				wg.Wait()
			}()
			runtime.GC()
			var m0, m1, m2 runtime.MemStats
			runtime.ReadMemStats(&m0)
			g0 := runtime.NumGoroutine()
			// A failed acquisition is counted (acquire-failed) and skipped,
			// so that one library's failure under load still leaves numbers.
			var failed atomic.Int64
			var firstErr atomic.Pointer[error]
			var wg sync.WaitGroup
			acquireStart := time.Now()
			for w := range par {
				wg.Go(func() {
					kg := newKeygen(prefix + strconv.Itoa(w) + ":")
					for i := w; i < locks; i += par {
						h, err := lk.lock(b.Context(), kg.next())
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, &err)
							continue
						}
						hs[i] = h
					}
				})
			}
			wg.Wait()
			if p := firstErr.Load(); p != nil {
				b.Logf("%d of %d acquisitions failed; first: %v", failed.Load(), locks, *p)
			}
			acquired := time.Since(acquireStart)
			heldN := locks - int(failed.Load())
			if heldN == 0 {
				b.Fatal("no lock acquired")
			}
			lostAcquiring := countLost(hs)
			runtime.GC()
			runtime.ReadMemStats(&m1)
			g1 := runtime.NumGoroutine()
			cpu0, t0 := cpuTime(), time.Now()
			for b.Loop() {
				time.Sleep(refresh)
			}
			cpu1, secs := cpuTime(), time.Since(t0).Seconds()
			runtime.ReadMemStats(&m2)
			lost := countLost(hs)
			if lost > 0 {
				b.Logf("%d of %d held locks lost: %d while the %d acquisitions ran (%.1fs), %d more in the %v held; %s",
					lost, heldN, lostAcquiring, locks, acquired.Seconds(), lost-lostAcquiring, refresh, lossReasons(hs))
			}
			perLock := func(v float64) float64 { return v / float64(heldN) }
			b.ReportMetric(perLock(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))), "B/lock")
			b.ReportMetric(perLock(float64(g1-g0)), "goroutines/lock")
			b.ReportMetric(perLock(us(cpu1-cpu0))/secs, "cpu-us/lock/s")
			b.ReportMetric(perLock(float64(m2.Mallocs-m1.Mallocs))/secs, "allocs/lock/s")
			b.ReportMetric(float64(lost), "lost")
			b.ReportMetric(float64(failed.Load()), "acquire-failed")
		})
	}
}

// countLost counts the held locks whose library knows they are lost.
func countLost(hs []held) int {
	n := 0
	for _, h := range hs {
		if h != nil && h.lost() {
			n++
		}
	}
	return n
}

// quoted matches a quoted key in an error message.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// lossReasons summarizes why the lost locks of hs are lost, for a library
// that says (dlock: Lock.Err): the first line of each reason with its key
// left out, the most frequent first, at most 5.
func lossReasons(hs []held) string {
	count := map[string]int{}
	for _, h := range hs {
		w, ok := h.(interface{ why() error })
		if !ok || h == nil || !h.lost() {
			continue
		}
		why := "no reason given"
		if err := w.why(); err != nil {
			why, _, _ = strings.Cut(err.Error(), "\n")
			why = quoted.ReplaceAllString(why, "KEY")
		}
		count[why]++
	}
	if len(count) == 0 {
		return "no reasons known"
	}
	reasons := slices.SortedFunc(maps.Keys(count), func(a, b string) int {
		return cmp.Or(count[b]-count[a], strings.Compare(a, b))
	})
	var sb strings.Builder
	sb.WriteString("reasons:")
	for i, r := range reasons {
		if i == 5 {
			fmt.Fprintf(&sb, "\n  (%d more reasons)", len(reasons)-5)
			break
		}
		fmt.Fprintf(&sb, "\n  %d× %s", count[r], r)
	}
	return sb.String()
}

var _ redis.UniversalClient = (*redis.Client)(nil)
