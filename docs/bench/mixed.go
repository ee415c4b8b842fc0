//go:build ignore

package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"
)

// mixed: N idle subscribers, a fraction of them (-echo-frac) also echoing,
// and a publisher broadcasting every I. Every echoing connection sends one
// echo message every -echo-i (open loop, the sends of all echoers spread
// evenly over the interval); every subscriber records each broadcast's
// delay from the publisher's timestamp. The result reports the p99 of the
// echo replies, of the broadcast deliveries, and of both together, from
// one window, so a server that favours one kind of traffic shows it.
//
// Like broadcast, it first sends warm-up broadcasts until every subscriber
// has seen one. The subscribers and echoers are driven by one epoll loop on
// this goroutine (poller); the publisher is a plain connection.
func cmdMixed(args []string) error {
	fs := flag.NewFlagSet("mixed", flag.ExitOnError)
	var cm common
	cm.register(fs)
	N := fs.Int("n", 10000, "subscriber connections (idle but for broadcasts and echo)")
	frac := fs.Float64("echo-frac", 0.01, "fraction of the subscribers that also echo")
	echoI := fs.Duration("echo-i", 100*time.Millisecond, "interval between two echo messages of one echoing connection")
	I := fs.Duration("i", 100*time.Millisecond, "broadcast interval")
	D := fs.Duration("d", 5*time.Second, "measurement duration (K = D/I broadcasts)")
	S := fs.Int("s", 64, "message size in bytes (>= 26), echo and broadcast")
	readyTO := fs.Duration("ready-timeout", 30*time.Second, "max time for all subscribers to receive a warm-up broadcast")
	drain := fs.Duration("drain", 5*time.Second, "max wait for deliveries and replies after the window")
	fs.Parse(args)
	if *N < 1 || *I <= 0 || *D < *I || *echoI <= 0 || *frac < 0 || *frac > 1 {
		return fmt.Errorf("need -n >= 1, -i > 0, -d >= -i, -echo-i > 0, 0 <= -echo-frac <= 1")
	}
	if err := cm.setup(*N + 1); err != nil {
		return err
	}
	nofile := raiseNofile()
	size := *S
	if size < minMsg {
		size = minMsg
	}
	K := int(*D / *I)
	E := int(float64(*N)**frac + 0.5)
	res := cm.newResult("mixed", fmt.Sprintf("mixed_n%d", *N), map[string]any{
		"n": *N, "echoers": E, "echo_i_ms": float64(*echoI) / 1e6, "i_ms": float64(*I) / 1e6,
		"d_s": D.Seconds(), "k": K, "s": size, "nofile": nofile,
	})

	conns, failed, ferr, connElapsed := cm.connectMany(*N+1, time.Now().Add(120*time.Second))
	var pub *wsConn
	for i := len(conns) - 1; i >= 0 && pub == nil; i-- {
		if conns[i] != nil {
			pub, conns[i] = conns[i], nil
		}
	}
	if pub == nil {
		return fmt.Errorf("no connection could be opened: %v", ferr)
	}
	defer pub.Close()
	if failed > 0 {
		res.note("%d of %d connections failed: %v", failed, *N+1, ferr)
	}

	mh := &mixedHandler{bcast: &hist{}, echo: &hist{}}
	p, err := newPoller(mh, size+14)
	if err != nil {
		closeAll(conns)
		return err
	}
	defer p.closeAll()
	subs := 0
	var echoers []*epConn
	for i, c := range conns {
		if c == nil {
			continue
		}
		var tmpl *msgTemplate
		if len(echoers) < E {
			tmpl = newTemplate(c, opText, 'E', 'M', size)
		}
		ec, err := p.adopt(c, i)
		if err != nil {
			c.Close()
			continue
		}
		subs++
		if tmpl != nil {
			ec.tmpl = tmpl
			echoers = append(echoers, ec)
		}
	}
	if len(echoers) < E {
		res.note("only %d of %d echoing connections could be opened", len(echoers), E)
	}

	// The publisher also receives every broadcast; drain them.
	go func() {
		for {
			f, err := pub.ReadFrame()
			if err != nil {
				return
			}
			if f.op == opPing {
				pub.pong(f.head)
			}
		}
	}()

	warmT := newTemplate(pub, opText, 'B', 'W', size)
	measT := newTemplate(pub, opText, 'B', 'M', size)
	buf := make([]byte, 0, len(measT.frame))
	readyDL := time.Now().Add(*readyTO)
	for mh.ready < subs && time.Now().Before(readyDL) {
		buf = warmT.appendMsg(buf[:0], nowNs(), 0)
		if err := pub.write(buf); err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		for until := nowNs() + int64(100*time.Millisecond); nowNs() < until; {
			p.poll(10)
		}
	}
	if mh.ready < subs {
		res.note("only %d of %d subscribers received a warm-up broadcast within %v", mh.ready, subs, *readyTO)
	}
	for until := nowNs() + int64(200*time.Millisecond); nowNs() < until; {
		p.poll(10) // let warm-up traffic drain
	}

	// One window: K broadcasts every I and, meanwhile, every echoer sends
	// every echoI, echoer j at offset j*echoI/E within each interval.
	mh.measuring = true
	cpu := startCPU(cm.serverPID)
	start := nowNs()
	end := start + int64(*D)
	var echoSent, bcastSent int64
	nE := int64(len(echoers))
	for {
		now := nowNs()
		if now >= end {
			break
		}
		for int(bcastSent) < K && now >= start+bcastSent*int64(*I) {
			buf = measT.appendMsg(buf[:0], nowNs(), uint32(bcastSent))
			if err := pub.write(buf); err != nil {
				res.note("publisher write failed after %d messages: %v", bcastSent, err)
				K = int(bcastSent)
				break
			}
			bcastSent++
		}
		if nE > 0 {
			due := (now - start) * nE / int64(*echoI)
			for ; echoSent <= due; echoSent++ {
				c := echoers[echoSent%nE]
				c.wbuf = c.tmpl.appendMsg(c.wbuf[:0], nowNs(), uint32(echoSent/nE))
				p.send(c, c.wbuf)
				c.wbuf = c.wbuf[:0]
			}
		}
		p.poll(1)
	}
	expectB := int64(subs) * int64(K)
	drainDL := nowNs() + int64(*drain)
	for (mh.bcastGot < expectB || mh.echoGot < echoSent) && nowNs() < drainDL {
		p.poll(10)
	}
	u := cpu.stop()
	mh.measuring = false
	span := float64(nowNs()-start) / 1e9
	if mh.last > start {
		span = float64(mh.last-start) / 1e9
	}

	all := &hist{}
	all.Merge(mh.bcast)
	all.Merge(mh.echo)
	res.add("p99_ms", float64(all.Quantile(0.99))/1e6, "ms")
	res.add("bcast_p50_ms", float64(mh.bcast.Quantile(0.50))/1e6, "ms")
	res.add("bcast_p99_ms", float64(mh.bcast.Quantile(0.99))/1e6, "ms")
	res.add("bcast_max_ms", float64(mh.bcast.max)/1e6, "ms")
	res.add("echo_p50_ms", float64(mh.echo.Quantile(0.50))/1e6, "ms")
	res.add("echo_p99_ms", float64(mh.echo.Quantile(0.99))/1e6, "ms")
	res.add("echo_max_ms", float64(mh.echo.max)/1e6, "ms")
	res.add("deliveries_per_s", float64(mh.bcastGot)/span, "msg/s")
	res.add("echo_per_s", float64(mh.echoGot)/span, "msg/s")
	res.add("bcast_lost", float64(max(expectB-mh.bcastGot, 0)), "msgs")
	res.add("echo_lost", float64(max(echoSent-mh.echoGot, 0)), "msgs")
	res.add("dropped_subs", float64(mh.dropped), "conns")
	res.add("connect_per_s", float64(subs+1)/connElapsed.Seconds(), "handshakes/s")
	if n := mh.bcastGot + mh.echoGot; u.srv >= 0 && n > 0 {
		res.add("srv_us_per_msg", u.srv/100*1e6*span/float64(n), "us CPU")
	}
	res.addCPU("", u)
	res.flagCPU(u, runtime.GOMAXPROCS(0))
	if mh.bad > 0 {
		res.note("%d unexpected (unparseable) messages received", mh.bad)
	}
	cm.emit(res)
	return nil
}

// mixedHandler runs on the poller goroutine, which is also the one that
// publishes and sends echo messages: no field needs to be atomic.
type mixedHandler struct {
	bcast, echo       *hist
	ready             int
	measuring         bool
	bcastGot, echoGot int64
	last              int64
	dropped           int
	bad               int64
}

func (h *mixedHandler) onMessage(c *epConn, op byte, head []byte, plen int) {
	now := nowNs()
	kind, ts, _, ok := parseMsg(head)
	switch {
	case !ok:
		h.bad++
	case head[0] == 'B' && kind == 'W':
		if !c.ready {
			c.ready = true
			h.ready++
		}
	case head[0] == 'B' && kind == 'M':
		h.bcast.Record(now - ts)
		h.bcastGot++
		h.last = max(h.last, now)
	case head[0] == 'E' && kind == 'M':
		h.echo.Record(now - ts)
		h.echoGot++
		h.last = max(h.last, now)
	default:
		h.bad++
	}
}

func (h *mixedHandler) onDead(c *epConn, err error) {
	if h.measuring {
		h.dropped++
	}
}
