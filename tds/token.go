package tds

import "fmt"

// TokenType is the first byte of each token in a token stream
// [MS-TDS §2.2.7]. The class bits (§2.2.4.2.1) are not reliable for
// skipping (ROW sits in the zero-length class, DONE is 12 bytes in 7.2+,
// FEATUREEXTACK has no length), so the scanner uses an explicit table.
type TokenType uint8

const (
	TokenAltMetadata        TokenType = 0x88
	TokenAltRow             TokenType = 0xD3
	TokenColInfo            TokenType = 0xA5
	TokenColMetadata        TokenType = 0x81
	TokenDataClassification TokenType = 0xA3
	TokenDone               TokenType = 0xFD
	TokenDoneInProc         TokenType = 0xFF
	TokenDoneProc           TokenType = 0xFE
	TokenEnvChange          TokenType = 0xE3
	TokenError              TokenType = 0xAA
	TokenFeatureExtAck      TokenType = 0xAE
	TokenFedAuthInfo        TokenType = 0xEE
	TokenInfo               TokenType = 0xAB
	TokenLoginAck           TokenType = 0xAD
	TokenNBCRow             TokenType = 0xD2
	TokenOffset             TokenType = 0x78
	TokenOrder              TokenType = 0xA9
	TokenReturnStatus       TokenType = 0x79
	TokenReturnValue        TokenType = 0xAC
	TokenRow                TokenType = 0xD1
	TokenSessionState       TokenType = 0xE4
	TokenSSPI               TokenType = 0xED
	TokenTabName            TokenType = 0xA4
)

var tokenNames = map[TokenType]string{
	TokenAltMetadata: "ALTMETADATA", TokenAltRow: "ALTROW", TokenColInfo: "COLINFO", TokenColMetadata: "COLMETADATA",
	TokenDataClassification: "DATACLASSIFICATION", TokenDone: "DONE", TokenDoneInProc: "DONEINPROC",
	TokenDoneProc: "DONEPROC", TokenEnvChange: "ENVCHANGE", TokenError: "ERROR", TokenFeatureExtAck: "FEATUREEXTACK",
	TokenFedAuthInfo: "FEDAUTHINFO", TokenInfo: "INFO", TokenLoginAck: "LOGINACK", TokenNBCRow: "NBCROW",
	TokenOffset: "OFFSET", TokenOrder: "ORDER", TokenReturnStatus: "RETURNSTATUS", TokenReturnValue: "RETURNVALUE",
	TokenRow: "ROW", TokenSessionState: "SESSIONSTATE", TokenSSPI: "SSPI", TokenTabName: "TABNAME",
}

func (t TokenType) String() string {
	if s, ok := tokenNames[t]; ok {
		return s
	}
	return fmt.Sprintf("TokenType(0x%02X)", uint8(t))
}

// appendUSLenToken appends token + USHORT length placeholder and returns
// the position of the length so finishUSLen can patch it.
func beginUSLen(dst []byte, t TokenType) ([]byte, int) {
	dst = append(dst, byte(t), 0, 0)
	return dst, len(dst) - 2
}

func finishUSLen(dst []byte, at int) []byte {
	n := len(dst) - at - 2
	dst[at], dst[at+1] = byte(n), byte(n>>8)
	return dst
}
