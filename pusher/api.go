package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
)

// The HTTP API, as Pusher documents it and its server libraries call it.
// Answers are JSON; errors are text, with the statuses Pusher uses: 400 for
// a malformed request, 401 for authentication, 404 for an unknown app, 413
// for event data over the limit.
func (s *Server) routes() {
	s.mux.Handle("GET /app/{key}", s.ws)
	s.mux.HandleFunc("POST /apps/{id}/events", s.api(s.events))
	s.mux.HandleFunc("POST /apps/{id}/batch_events", s.api(s.batchEvents))
	s.mux.HandleFunc("GET /apps/{id}/channels", s.api(s.channels))
	s.mux.HandleFunc("GET /apps/{id}/channels/{channel}", s.api(s.channel))
	s.mux.HandleFunc("GET /apps/{id}/channels/{channel}/users", s.api(s.users))
	s.mux.HandleFunc("POST /apps/{id}/users/{user}/terminate_connections", s.api(s.terminate))
}

// apiHandler answers an authenticated HTTP API request with a value to
// send as JSON, or an error.
type apiHandler func(ctx context.Context, a *app, r *http.Request, body []byte) (any, error)

// api wraps an apiHandler with what every request goes through: the app
// (404), the body limit (413), the signature (401).
func (s *Server) api(h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.byID[r.PathValue("id")]
		if a == nil {
			writeError(w, &apiError{http.StatusNotFound, "Unknown app " + r.PathValue("id")})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.maxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeError(w, &apiError{http.StatusRequestEntityTooLarge, "Request body too large"})
			} else {
				writeError(w, &apiError{http.StatusBadRequest, "Request body unreadable"})
			}
			return
		}
		if e := s.authenticate(a, r, body); e != nil {
			writeError(w, e)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), hubTimeout)
		defer cancel()
		v, err := h(ctx, a, r, body)
		if err != nil {
			writeError(w, err)
			return
		}
		b, _ := json.Marshal(v)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

func writeError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, err.Error()
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		status = ae.status
	case errors.Is(err, ErrDataTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnknownApp):
		status = http.StatusNotFound
	case errors.Is(err, ErrInvalidChannel), errors.Is(err, ErrInvalidEventName),
		errors.Is(err, ErrTooManyChannels), errors.Is(err, ErrInvalidSocketID):
		status = http.StatusBadRequest
	default:
		status, msg = http.StatusServiceUnavailable, "Server unavailable, try again later"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

// apiEvent is an event of POST /events and of POST /batch_events.
type apiEvent struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`
}

// event checks an apiEvent and makes the Event it triggers.
func (a *app) event(v apiEvent) (Event, error) {
	var data string
	if json.Unmarshal(v.Data, &data) != nil {
		return Event{}, badRequest("data must be a string (JSON-encode objects first)")
	}
	channels := v.Channels
	if v.Channel != "" {
		if channels != nil {
			return Event{}, badRequest("give channel or channels, not both")
		}
		channels = []string{v.Channel}
	}
	e := Event{App: a.ID, Channels: channels, Name: v.Name, Data: data, SocketID: v.SocketID}
	if err := a.checkEvent(e); err != nil {
		return Event{}, err
	}
	return e, nil
}

// events is POST /apps/{id}/events: {"name","data","channels"|"channel",
// "socket_id","info"}. The answer is {} or, with info, the channels'
// attributes.
func (s *Server) events(ctx context.Context, a *app, _ *http.Request, body []byte) (any, error) {
	var v apiEvent
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, badRequest("Malformed JSON body")
	}
	e, err := a.event(v)
	if err != nil {
		return nil, err
	}
	info, err := parseInfo(v.Info)
	if err != nil {
		return nil, err
	}
	if err := a.publish(ctx, e); err != nil {
		return nil, err
	}
	if info == 0 {
		return struct{}{}, nil
	}
	attrs, err := a.channelInfo(ctx, e.Channels, info)
	if err != nil {
		return nil, err
	}
	return map[string]any{"channels": attrs}, nil
}

// batchEvents is POST /apps/{id}/batch_events: {"batch":[event, ...]}, at
// most MaxBatchEvents, each with one channel. Every event is checked before
// any is sent.
func (s *Server) batchEvents(ctx context.Context, a *app, _ *http.Request, body []byte) (any, error) {
	var v struct {
		Batch []apiEvent `json:"batch"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, badRequest("Malformed JSON body")
	}
	if len(v.Batch) == 0 || len(v.Batch) > MaxBatchEvents {
		return nil, badRequest("batch must hold 1 to 10 events")
	}
	events := make([]Event, len(v.Batch))
	infos := make([]infoAttrs, len(v.Batch))
	anyInfo := false
	for i, item := range v.Batch {
		if item.Channels != nil {
			return nil, badRequest("batch events take one channel each")
		}
		e, err := a.event(item)
		if err != nil {
			return nil, err
		}
		if infos[i], err = parseInfo(item.Info); err != nil {
			return nil, err
		}
		events[i], anyInfo = e, anyInfo || infos[i] != 0
	}
	for _, e := range events {
		if err := a.publish(ctx, e); err != nil {
			return nil, err
		}
	}
	if !anyInfo {
		return struct{}{}, nil
	}
	out := make([]map[string]int, len(events))
	for i, e := range events {
		attrs, err := a.channelInfo(ctx, e.Channels, infos[i])
		if err != nil {
			return nil, err
		}
		out[i] = attrs[e.Channels[0]]
	}
	return map[string]any{"batch": out}, nil
}

// infoAttrs are the attributes asked with info=.
type infoAttrs uint8

const (
	infoUserCount infoAttrs = 1 << iota
	infoSubscriptionCount
)

// parseInfo reads info=user_count,subscription_count.
func parseInfo(s string) (infoAttrs, error) {
	var out infoAttrs
	if s == "" {
		return 0, nil
	}
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "user_count":
			out |= infoUserCount
		case "subscription_count":
			out |= infoSubscriptionCount
		default:
			return 0, badRequest("info takes user_count and subscription_count")
		}
	}
	return out, nil
}

// channelInfo returns the attributes of channels asked with info, across
// the cluster: user_count for presence channels, subscription_count.
func (a *app) channelInfo(ctx context.Context, channels []string, info infoAttrs) (map[string]map[string]int, error) {
	out := make(map[string]map[string]int, len(channels))
	var subs map[string]int
	if info&infoSubscriptionCount != 0 {
		var err error
		if subs, err = a.s.cluster.counts(ctx, a, channels, ""); err != nil {
			return nil, err
		}
	}
	for _, ch := range channels {
		attrs := make(map[string]int)
		if info&infoUserCount != 0 && channelKind(ch) == kindPresence {
			users, err := a.users(ctx, ch)
			if err != nil {
				return nil, err
			}
			attrs["user_count"] = len(users)
		}
		if info&infoSubscriptionCount != 0 {
			attrs["subscription_count"] = subs[ch]
		}
		out[ch] = attrs
	}
	return out, nil
}

// users returns the distinct user ids of a presence channel, cluster-wide,
// sorted.
func (a *app) users(ctx context.Context, channel string) ([]string, error) {
	members, err := a.s.presence.Members(ctx, a.presenceTopic(channel))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range members {
		if id, _, ok := decodeMember(m); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// channels is GET /apps/{id}/channels?filter_by_prefix=&info=: the
// occupied channels, cluster-wide. user_count needs a filter_by_prefix
// starting with "presence-".
func (s *Server) channels(ctx context.Context, a *app, r *http.Request, _ []byte) (any, error) {
	q := r.URL.Query()
	prefix := q.Get("filter_by_prefix")
	info, err := parseInfo(q.Get("info"))
	if err != nil {
		return nil, err
	}
	if info&infoUserCount != 0 && !strings.HasPrefix(prefix, presencePrefix) {
		return nil, badRequest("user_count needs filter_by_prefix=presence-")
	}
	counts, err := s.cluster.counts(ctx, a, nil, prefix)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(counts))
	for ch := range counts {
		names = append(names, ch)
	}
	attrs, err := a.channelInfo(ctx, names, info&infoUserCount)
	if err != nil {
		return nil, err
	}
	if info&infoSubscriptionCount != 0 {
		for ch, n := range counts {
			attrs[ch]["subscription_count"] = n
		}
	}
	return map[string]any{"channels": attrs}, nil
}

// channel is GET /apps/{id}/channels/{channel}?info=: occupied, and
// user_count (presence channels only) and subscription_count when asked.
func (s *Server) channel(ctx context.Context, a *app, r *http.Request, _ []byte) (any, error) {
	ch := r.PathValue("channel")
	if !ValidChannelName(ch) {
		return nil, badRequest("Invalid channel name")
	}
	info, err := parseInfo(r.URL.Query().Get("info"))
	if err != nil {
		return nil, err
	}
	if info&infoUserCount != 0 && channelKind(ch) != kindPresence {
		return nil, badRequest("user_count is for presence channels only")
	}
	counts, err := s.cluster.counts(ctx, a, []string{ch}, "")
	if err != nil {
		return nil, err
	}
	out := map[string]any{"occupied": counts[ch] > 0}
	attrs, err := a.channelInfo(ctx, []string{ch}, info&infoUserCount)
	if err != nil {
		return nil, err
	}
	for k, v := range attrs[ch] {
		out[k] = v
	}
	if info&infoSubscriptionCount != 0 {
		out["subscription_count"] = counts[ch]
	}
	return out, nil
}

// users is GET /apps/{id}/channels/{channel}/users: {"users":[{"id":...}]}
// for a presence channel.
func (s *Server) users(ctx context.Context, a *app, r *http.Request, _ []byte) (any, error) {
	ch := r.PathValue("channel")
	if !ValidChannelName(ch) || channelKind(ch) != kindPresence {
		return nil, badRequest("Users are listed for presence channels only")
	}
	ids, err := a.users(ctx, ch)
	if err != nil {
		return nil, err
	}
	type user struct {
		ID string `json:"id"`
	}
	out := make([]user, len(ids))
	for i, id := range ids {
		out[i] = user{id}
	}
	return map[string]any{"users": out}, nil
}

// terminate is POST /apps/{id}/users/{user}/terminate_connections: every
// connection signed in as the user, on every node, is closed with 4009.
func (s *Server) terminate(ctx context.Context, a *app, r *http.Request, _ []byte) (any, error) {
	user := r.PathValue("user")
	if user == "" || len(user) > MaxUserIDLength {
		return nil, badRequest("Invalid user id")
	}
	if err := a.terminate(ctx, user); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
