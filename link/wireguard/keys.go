package wireguard

import (
	"crypto/rand"

	"golang.org/x/crypto/curve25519"
)

// GenKey returns a new base64 private key, as `wg genkey` prints it.
func GenKey() (string, error) {
	var k key
	if _, err := rand.Read(k[:]); err != nil {
		return "", err
	}
	// Clamped as RFC 7748 section 5 describes, so the stored key is the
	// scalar actually used, byte for byte what wg genkey writes.
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k.String(), nil
}

// PubKey returns the base64 public key of a base64 private key, as `wg
// pubkey` does.
func PubKey(priv string) (string, error) {
	k, err := parseKey(priv)
	if err != nil {
		return "", err
	}
	pub := publicKey(k)
	return pub.String(), nil
}

func publicKey(priv key) key {
	var pub key
	// X25519 with the base point fails only for low-order points, which
	// the base point is not.
	b, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	copy(pub[:], b)
	return pub
}
