package pusher_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ratchetgo/ratchet/pusher"
)

// The signature checks, with the statuses Pusher answers: 401 for every
// authentication failure, 404 for an unknown app.
func TestAPISignature(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	n := single(t, nil, pusher.WithClock(clock.Now))
	body := []byte(`{"name":"e","channel":"news","data":"1"}`)
	req := func() *apiRequest {
		r := newRequest("POST", "/apps/1/events", body)
		r.ts = clock.Now()
		return r
	}
	status := func(r *apiRequest) int {
		t.Helper()
		s, _ := r.do(t, n)
		return s
	}

	good := req()
	query := good.query()
	code, answer := good.doQuery(t, n, query)
	require.Equal(t, http.StatusOK, code, answer)
	assert.JSONEq(t, `{}`, answer)
	code, answer = good.doQuery(t, n, query)
	assert.Equal(t, http.StatusUnauthorized, code, "a replay")
	assert.Contains(t, answer, "replay")

	old := req()
	old.ts = clock.Now().Add(-pusher.DefaultMaxSkew - time.Second)
	assert.Equal(t, http.StatusUnauthorized, status(old), "an old timestamp")
	future := req()
	future.ts = clock.Now().Add(pusher.DefaultMaxSkew + time.Second)
	assert.Equal(t, http.StatusUnauthorized, status(future), "a timestamp from the future")
	edge := req()
	edge.ts = clock.Now().Add(-pusher.DefaultMaxSkew)
	assert.Equal(t, http.StatusOK, status(edge), "at the edge of the window")

	wrongSecret := req()
	wrongSecret.secret = "not-the-secret"
	assert.Equal(t, http.StatusUnauthorized, status(wrongSecret), "a wrong signature")

	wrongKey := req()
	wrongKey.key = "other-key"
	assert.Equal(t, http.StatusUnauthorized, status(wrongKey), "a wrong auth_key")

	// Signed for one body, sent with another: the signature is right (over
	// the first body's MD5), the body_md5 is not the body's.
	swapped := req()
	q := swapped.query()
	swapped.body = []byte(`{"name":"e","channel":"news","data":"2"}`)
	code, answer = swapped.doQuery(t, n, q)
	assert.Equal(t, http.StatusUnauthorized, code, "a wrong body_md5")
	assert.Contains(t, answer, "body_md5")

	// Parameters changed after signing.
	tampered := req()
	code, _ = tampered.doQuery(t, n, tampered.query()+"&info=user_count")
	assert.Equal(t, http.StatusUnauthorized, code)
	version := req()
	version.params["auth_version"] = "2.0"
	assert.Equal(t, http.StatusUnauthorized, status(version))
	for _, broken := range []string{"", "auth_key=app-key", strings.Replace(req().query(), "auth_signature=", "auth_signature=0", 1), "%zz"} {
		code, _ = req().doQuery(t, n, broken)
		assert.Contains(t, []int{http.StatusUnauthorized, http.StatusBadRequest}, code, broken)
	}

	unknown := req()
	unknown.path = "/apps/9/events"
	assert.Equal(t, http.StatusNotFound, status(unknown))

	// GET requests sign their query parameters.
	get := newRequest("GET", "/apps/1/channels", nil)
	get.ts = clock.Now()
	get.params["filter_by_prefix"] = "presence-"
	get.params["info"] = "user_count"
	assert.Equal(t, http.StatusOK, status(get))
}

func TestAPIEventsChecks(t *testing.T) {
	n := single(t, nil, pusher.WithMaxRequestBody(64<<10))
	post := func(body string) (int, string) {
		t.Helper()
		return newRequest("POST", "/apps/1/events", []byte(body)).do(t, n)
	}
	many := `["` + strings.TrimSuffix(strings.Repeat(`c","`, pusher.MaxTriggerChannels+1), `","`) + `"]`
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"name":"e","channel":"a","data":"x"}`, 200},
		{`{"name":"e","channels":["a","b"],"data":"x"}`, 200},
		{`{"name":"e","channels":` + many + `,"data":"x"}`, 400},
		{`{"name":"e","channel":"a","data":"` + strings.Repeat("x", pusher.DefaultMaxEventDataSize+1) + `"}`, 413},
		{`{"name":"e","channel":"a","data":{"not":"a string"}}`, 400},
		{`{"name":"e","channel":"a"}`, 400},
		{`{"name":"e","channel":"a b","data":"x"}`, 400},
		{`{"name":"e","channel":"a","channels":["b"],"data":"x"}`, 400},
		{`{"name":"","channel":"a","data":"x"}`, 400},
		{`{"name":"` + strings.Repeat("e", pusher.MaxEventNameLength+1) + `","channel":"a","data":"x"}`, 400},
		{`{"name":"e","channel":"a","data":"x","socket_id":"nope"}`, 400},
		{`{"name":"e","channel":"a","data":"x","info":"nope"}`, 400},
		{`{"name":`, 400},
		{`{"name":"e","channel":"a","data":"` + strings.Repeat("x", 64<<10) + `"}`, 413},
	} {
		code, answer := post(tc.body)
		assert.Equal(t, tc.status, code, "%.80s: %s", tc.body, answer)
	}
	code, _ := newRequest("GET", "/apps/1/events", nil).do(t, n)
	assert.Equal(t, http.StatusMethodNotAllowed, code)
}

func TestAPIBatchEvents(t *testing.T) {
	n := single(t, nil)
	c := connect(t, n, testApp.Key)
	c.join("news", "")
	item := map[string]any{"name": "e", "channel": "news", "data": "x"}
	batch := func(items ...map[string]any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"batch": items})
		code, answer := newRequest("POST", "/apps/1/batch_events", b).do(t, n)
		var out map[string]any
		_ = json.Unmarshal([]byte(answer), &out)
		return code, out
	}
	eleven := make([]map[string]any, pusher.MaxBatchEvents+1)
	for i := range eleven {
		eleven[i] = item
	}
	code, _ := batch(eleven...)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = batch(item, map[string]any{"name": "e", "channel": "bad name", "data": "x"})
	assert.Equal(t, http.StatusBadRequest, code, "nothing is sent when one event is wrong")
	c.sync()

	code, out := batch(item, map[string]any{"name": "f", "channel": "news", "data": "y", "info": "subscription_count"})
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]any{"batch": []any{map[string]any{}, map[string]any{"subscription_count": 1.0}}}, out)
	assert.Equal(t, "x", c.expect("e").data())
	assert.Equal(t, "y", c.expect("f").data())
}

func TestAPIChannels(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, nil), cl.node(t, nil)
	joinPresence(t, connect(t, a, testApp.Key), "presence-p", "1", "a")
	joinPresence(t, connect(t, b, testApp.Key), "presence-p", "2", "b")
	joinPresence(t, connect(t, b, testApp.Key), "presence-p", "2", "b")
	connect(t, a, testApp.Key).join("news", "")
	connect(t, b, testApp.Key).join("news", "")
	connect(t, b, testApp.Key).join("private-x", "")

	get := func(path string, params map[string]string) (int, map[string]any) {
		t.Helper()
		r := newRequest("GET", path, nil)
		for k, v := range params {
			r.params[k] = v
		}
		code, answer := r.do(t, a)
		var out map[string]any
		_ = json.Unmarshal([]byte(answer), &out)
		return code, out
	}
	code, out := get("/apps/1/channels", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]any{"channels": map[string]any{"presence-p": map[string]any{}, "news": map[string]any{}, "private-x": map[string]any{}}}, out)
	_, out = get("/apps/1/channels", map[string]string{"filter_by_prefix": "presence-", "info": "user_count,subscription_count"})
	assert.Equal(t, map[string]any{"channels": map[string]any{"presence-p": map[string]any{"user_count": 2.0, "subscription_count": 3.0}}}, out)
	code, _ = get("/apps/1/channels", map[string]string{"info": "user_count"})
	assert.Equal(t, http.StatusBadRequest, code, "user_count needs the presence- filter")

	_, out = get("/apps/1/channels/news", map[string]string{"info": "subscription_count"})
	assert.Equal(t, map[string]any{"occupied": true, "subscription_count": 2.0}, out)
	_, out = get("/apps/1/channels/empty", nil)
	assert.Equal(t, map[string]any{"occupied": false}, out)
	code, _ = get("/apps/1/channels/news", map[string]string{"info": "user_count"})
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = get("/apps/1/channels/news/users", nil)
	assert.Equal(t, http.StatusBadRequest, code)
	_, out = get("/apps/1/channels/presence-p/users", nil)
	assert.Equal(t, map[string]any{"users": []any{map[string]any{"id": "1"}, map[string]any{"id": "2"}}}, out)

	// POST /events with info.
	b2, _ := json.Marshal(map[string]any{"name": "e", "channels": []string{"presence-p", "news"}, "data": "x", "info": "user_count,subscription_count"})
	out = newRequest("POST", "/apps/1/events", b2).ok(t, b)
	assert.Equal(t, map[string]any{"channels": map[string]any{
		"presence-p": map[string]any{"user_count": 2.0, "subscription_count": 3.0},
		"news":       map[string]any{"subscription_count": 2.0},
	}}, out)
}

// A node that is listed but does not answer (it died, its presence entry
// not yet expired) is left out of a count after WithQueryTimeout.
func TestCountsLeaveOutSilentNodes(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(t, nil, pusher.WithQueryTimeout(500*time.Millisecond)) // the ghost's wait
	b := cl.node(t, nil)
	connect(t, a, testApp.Key).join("news", "")
	connect(t, b, testApp.Key).join("news", "")
	ctx := context.Background()
	require.NoError(t, cl.presence.Join(ctx, "@pusher-nodes/", "ghost"))
	r := newRequest("GET", "/apps/1/channels/news", nil)
	r.params["info"] = "subscription_count"
	assert.Equal(t, map[string]any{"occupied": true, "subscription_count": 2.0}, r.ok(t, a))
}
