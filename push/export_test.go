package push

// Cause returns why the stream was cut off, nil if it was not; only tests
// need to ask.
func (c *stream) Cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}
