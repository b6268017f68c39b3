package tds

import (
	"fmt"
	"strings"
)

// FEATUREEXTACK (0xAE) [MS-TDS §2.2.7.11]: repeated FeatureId(1)
// DataLen(4) Data, ending with 0xFF. Unlike its token class suggests it has
// no overall length. A server must ack only features the client requested
// (tedious rejects unknown acks).

// FeatureExtAck lists acknowledged features.
type FeatureExtAck struct {
	Features []Feature
}

// AppendFeatureExtAck appends the token.
func (a FeatureExtAck) AppendFeatureExtAck(dst []byte) []byte {
	return appendFeatures(append(dst, byte(TokenFeatureExtAck)), a.Features)
}

// DecodeFeatureExtAck parses the token including its token byte; Data
// slices alias b.
func DecodeFeatureExtAck(b []byte) (FeatureExtAck, int, error) {
	if len(b) < 1 {
		return FeatureExtAck{}, 0, ErrShortBuffer
	}
	fs, n, err := decodeFeatures(b[1:], "FEATUREEXTACK", 1)
	if err != nil {
		return FeatureExtAck{}, 0, err
	}
	return FeatureExtAck{Features: fs}, 1 + n, nil
}

func (a FeatureExtAck) String() string {
	var parts []string
	for _, f := range a.Features {
		parts = append(parts, fmt.Sprintf("%s(%dB)", f.ID, len(f.Data)))
	}
	return "FEATUREEXTACK{" + strings.Join(parts, " ") + "}"
}
