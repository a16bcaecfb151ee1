package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// Do sends req to the admin socket at path and copies the answer to out as
// it arrives. It returns the server's closing message (for stderr), or its
// error. Cancelling ctx ends the request (how `ct events` stops).
func Do(ctx context.Context, path string, req *Request, out io.Writer) (string, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := d.DialContext(dctx, "unix", path)
	cancel()
	if err != nil {
		return "", fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return "", fmt.Errorf("admin socket %s: %w", path, err)
	}
	msg, err := readFrames(c, out)
	if err != nil && ctx.Err() != nil {
		return "", ctx.Err()
	}
	return msg, err
}
