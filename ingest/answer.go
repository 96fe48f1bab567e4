package ingest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// awaitRTSPAnswer asks an RTSP camera for its OPTIONS and waits up to timeout for the first line
// of its answer. A camera that accepts the connection and then says nothing would otherwise hold
// FFmpeg's open for OpenCV's 30 s: FFmpeg's RTSP client applies no rw_timeout to its connection,
// its own timeout option means a listen timeout elsewhere (RTMP), and gocv 0.31 cannot pass
// OpenCV an open timeout. Any answer, an authentication challenge included, is enough: FFmpeg
// does the rest. Other schemes are left to FFmpeg (HTTP honours rw_timeout).
func awaitRTSPAnswer(source string, timeout time.Duration) error {
	parsed, err := url.Parse(source)
	if err != nil || timeout <= 0 {
		return nil // FFmpeg reports a bad URL better
	}
	port := map[string]string{"rtsp": "554", "rtsps": "322"}[parsed.Scheme]
	if port == "" {
		return nil
	}
	if parsed.Port() != "" {
		port = parsed.Port()
	}
	address := net.JoinHostPort(parsed.Hostname(), port)
	deadline := time.Now().Add(timeout)
	connection, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return fmt.Errorf("not reachable: %w", err)
	}
	defer connection.Close()
	if parsed.Scheme == "rtsps" {
		// Only whether it answers is asked, and the request carries no credentials; FFmpeg,
		// which does not verify RTSPS certificates by default either, makes the real connection.
		connection = tls.Client(connection, &tls.Config{ServerName: parsed.Hostname(), InsecureSkipVerify: true})
	}
	connection.SetDeadline(deadline)
	request := *parsed
	request.User = nil
	if _, err := fmt.Fprintf(connection, "OPTIONS %s RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: reid\r\n\r\n", request.String()); err != nil {
		return fmt.Errorf("not answering: %w", err)
	}
	line, err := bufio.NewReader(connection).ReadString('\n')
	var timedOut net.Error
	switch {
	case errors.As(err, &timedOut) && timedOut.Timeout():
		return fmt.Errorf("accepted the connection but did not answer within %s (ingest.stall_timeout)", timeout)
	case err != nil && line == "":
		return fmt.Errorf("closed the connection without answering: %w", err)
	case !strings.HasPrefix(line, "RTSP/"):
		return fmt.Errorf("answered %q, not RTSP", strings.TrimSpace(truncate(line, 60)))
	}
	return nil
}

func truncate(text string, n int) string {
	if len(text) <= n {
		return text
	}
	return text[:n]
}
