// Package listen is what every example command does to choose its address
// and say where it serves: the -addr flag (PORT from the environment as its
// default port) and the URL to print once the listener is open.
package listen

import (
	"flag"
	"net"
	"os"
)

// DefaultAddr is where the examples listen without -addr or PORT: loopback
// only, so that trying an example exposes nothing.
const DefaultAddr = "127.0.0.1:8080"

// AddrFlag defines the -addr flag on flag.CommandLine. Its default is
// DefaultAddr, or 127.0.0.1:$PORT when PORT is set; -addr wins over PORT.
// ":8080" listens on every interface (containers), port 0 on any free port.
func AddrFlag() *string {
	def := DefaultAddr
	if port := os.Getenv("PORT"); port != "" {
		def = net.JoinHostPort("127.0.0.1", port)
	}
	return flag.String("addr", def,
		`address to listen on, host:port (":8080": every interface; port 0: any free one); PORT in the environment sets the default port`)
}

// URL returns the base URL (no trailing slash) of what l serves, with the
// port l really has: scheme is "http" or "ws", and httpHost is the host the
// App answers ("" or "*": any, and then the listener's address is used, or
// localhost for a listener on every interface).
func URL(scheme string, l net.Listener, httpHost string) string {
	host, port, _ := net.SplitHostPort(l.Addr().String())
	switch {
	case httpHost != "" && httpHost != "*":
		host = httpHost
	case net.ParseIP(host).IsUnspecified():
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
