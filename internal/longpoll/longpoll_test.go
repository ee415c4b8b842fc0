package longpoll_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/internal/longpoll"
)

// ended records how a session ended.
type ended struct {
	mu   sync.Mutex
	n    int
	err  error
	done chan struct{}
}

func newEnded() *ended { return &ended{done: make(chan struct{})} }

func (e *ended) onEnd(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	e.err = err
	if e.n == 1 {
		close(e.done)
	}
}

func (e *ended) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func collect(got *[]int) func([]int, bool) error {
	return func(b []int, _ bool) error { *got = append(*got, b...); return nil }
}

func TestPollTakesWhatWaits(t *testing.T) {
	s := longpoll.NewSession[int](longpoll.Config{})
	n, ok := s.Push(1, 2)
	require.True(t, ok)
	var got []int
	require.NoError(t, s.Poll(context.Background(), 0, collect(&got)))
	assert.Equal(t, []int{1, 2}, got)
	assert.True(t, s.WaitTaken(context.Background(), n))

	// A poll waits for the next push.
	done := make(chan error, 1)
	go func() { done <- s.Poll(context.Background(), 0, collect(&got)) }()
	s.Push(3)
	require.NoError(t, <-done)
	assert.Equal(t, []int{1, 2, 3}, got)

	// The deadline: nothing taken, not closed.
	var closed bool
	require.NoError(t, s.Poll(context.Background(), 10*time.Millisecond, func(b []int, c bool) error {
		got, closed = append(got, b...), c
		return nil
	}))
	assert.Equal(t, []int{1, 2, 3}, got)
	assert.False(t, closed)

	// The client left: nothing taken, write not called.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, s.Poll(ctx, 0, func([]int, bool) error { t.Error("write called"); return nil }), context.Canceled)

	s.End(nil)
	_, ok = s.Push(4)
	assert.False(t, ok, "no push after the end")
	require.NoError(t, s.Poll(context.Background(), 0, func(_ []int, c bool) error { closed = c; return nil }))
	assert.True(t, closed)
}

func TestSecondPendingRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		overlap longpoll.Overlap
	}{{"refuse", longpoll.Refuse}, {"replace", longpoll.Replace}} {
		t.Run(tc.name, func(t *testing.T) {
			s := longpoll.NewSession[int](longpoll.Config{Overlap: tc.overlap})
			defer s.End(nil)
			first := make(chan error, 1)
			started := make(chan struct{})
			var firstGot []int
			go func() {
				first <- s.Stream(context.Background(), 0, func(b []int, _ bool) error {
					if b == nil {
						return nil
					}
					firstGot = append(firstGot, b...)
					close(started)
					return nil
				})
			}()
			s.Push(1)
			<-started // the stream is the pending request
			var got []int
			err := s.Poll(context.Background(), time.Millisecond, collect(&got))
			if tc.overlap == longpoll.Refuse {
				assert.ErrorIs(t, err, longpoll.ErrBusy)
				s.End(nil)
				require.NoError(t, <-first, "the first one ends with the session")
				return
			}
			require.NoError(t, err)
			require.NoError(t, <-first, "replaced: the stream returns")
			s.Push(2)
			require.NoError(t, s.Poll(context.Background(), 0, collect(&got)))
			assert.Equal(t, []int{1}, firstGot)
			assert.Equal(t, []int{2}, got)
		})
	}
}

// A response that took items and failed ends the session with an error
// naming them; one that took nothing does not.
func TestFailedResponseEndsTheSession(t *testing.T) {
	e := newEnded()
	s := longpoll.NewSession[int](longpoll.Config{OnEnd: e.onEnd})
	broken := errors.New("connection reset")
	err := s.Poll(context.Background(), time.Millisecond, func([]int, bool) error { return broken })
	assert.ErrorIs(t, err, broken)
	assert.False(t, s.Closed(), "nothing was taken")

	s.Push(1, 2)
	err = s.Poll(context.Background(), 0, func([]int, bool) error { return broken })
	assert.ErrorIs(t, err, broken)
	err = e.wait(t)
	assert.ErrorIs(t, err, longpoll.ErrUndelivered)
	assert.ErrorIs(t, err, broken)
	assert.Contains(t, err.Error(), "(2)")
}

func TestIdleTimeout(t *testing.T) {
	idle := errors.New("idle")
	e := newEnded()
	s := longpoll.NewSession[int](longpoll.Config{Idle: 50 * time.Millisecond, IdleErr: idle, OnEnd: e.onEnd})
	// A pending request holds the session open past the timeout
	// (the timer is stopped while one is pending, whatever the schedule).
	ctx, cancel := context.WithCancel(context.Background())
	streaming := make(chan error, 1)
	go func() {
		streaming <- s.Stream(ctx, 0, func([]int, bool) error { return nil })
	}()
	s.Push(1) // taken by the stream: it is pending
	require.True(t, s.WaitTaken(context.Background(), 1))
	time.Sleep(150 * time.Millisecond)
	assert.False(t, s.Closed(), "ended while a request was pending")
	cancel()
	assert.ErrorIs(t, <-streaming, context.Canceled)
	assert.ErrorIs(t, e.wait(t), idle, "the timeout runs again once no request is pending")

	e = newEnded()
	s = longpoll.NewSession[int](longpoll.Config{Idle: 20 * time.Millisecond, IdleErr: idle, OnEnd: e.onEnd})
	assert.ErrorIs(t, e.wait(t), idle)
	assert.True(t, s.Closed())
}

func TestTakeDrainsAfterTheEnd(t *testing.T) {
	s := longpoll.NewSession[int](longpoll.Config{})
	s.Push(1)
	s.End(nil)
	b, closed := s.Take(context.Background())
	assert.Equal(t, []int{1}, b)
	assert.False(t, closed)
	b, closed = s.Take(context.Background())
	assert.Nil(t, b)
	assert.True(t, closed)
}

func TestSetImmediate(t *testing.T) {
	s := longpoll.NewSession[int](longpoll.Config{})
	defer s.End(nil)
	done := make(chan []int, 1)
	go func() {
		_ = s.Poll(context.Background(), 0, func(b []int, _ bool) error { done <- b; return nil })
	}()
	time.Sleep(10 * time.Millisecond) // usually pending by now; either way it answers at once
	s.SetImmediate(true)
	assert.Empty(t, <-done)
}

func TestRegistry(t *testing.T) {
	next := 0
	r := &longpoll.Registry[string]{NewID: func() string { next++; return string(rune('a' + next - 1)) }}
	s, ok := r.Create(func(id string) string { return "session " + id })
	require.True(t, ok)
	assert.Equal(t, "session a", s)
	got, ok := r.Get("a")
	assert.True(t, ok)
	assert.Equal(t, s, got)

	s, created, ok := r.CreateAt("x", func(id string) string { return "chosen " + id })
	assert.True(t, created && ok)
	assert.Equal(t, "chosen x", s)
	s, created, ok = r.CreateAt("x", func(string) string { t.Error("made twice"); return "" })
	assert.True(t, ok)
	assert.False(t, created)
	assert.Equal(t, "chosen x", s)
	assert.Equal(t, 2, r.Len())

	// Shutdown: new sessions refused, existing ones still found, and it
	// waits until each has left.
	ended := make(chan error, 1)
	go func() {
		ended <- r.Shutdown(context.Background(), func() {
			r.Each(func(s string) {
				go func() { r.Remove(s[len(s)-1:]); r.Leave() }()
			})
		}, func() {})
	}()
	require.NoError(t, <-ended)
	_, ok = r.Create(func(id string) string { return id })
	assert.False(t, ok)
	_, _, ok = r.CreateAt("y", func(id string) string { return id })
	assert.False(t, ok)
	assert.Equal(t, 0, r.Len())

	// Shutdown with a session that never leaves: ctx's error.
	r2 := &longpoll.Registry[int]{NewID: func() string { return "1" }}
	r2.Create(func(string) int { return 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	aborted := false
	assert.ErrorIs(t, r2.Shutdown(ctx, func() {}, func() { aborted = true }), context.DeadlineExceeded)
	assert.True(t, aborted)
	r2.Leave() // the session's end, late: Shutdown's waiter goes
}
