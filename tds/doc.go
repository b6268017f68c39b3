// Package tds implements the parts of the Tabular Data Stream protocol
// ([MS-TDS], TDS 7.2–7.4) that tdspool needs, as a pure library: it never
// reads or writes a socket. Decoders take byte slices and return
// ErrShortBuffer when more bytes are needed; encoders append to a slice.
//
// # Map
//
// Framing (MS-TDS §2.2.3):
//
//	packet.go          Header, PacketType, PacketStatus, AppendPackets (splitter)
//	reassembler.go     Reassembler: arbitrary chunks in, whole Messages out
//
// Connection setup (§2.2.6.5, §2.2.6.4):
//
//	prelogin.go        Prelogin, EncryptOption, NegotiateEncryption (pure matrix),
//	                   ServerPreloginReply
//	tls.go             TLSAdapter: crypto/tls over PRELOGIN-wrapped handshakes,
//	                   full or login-only encryption, sans-I/O API
//	login7.go          Login7 (decode, change, re-encode), Feature (FeatureExt)
//	password.go        Password: redacts itself in every fmt verb and JSON
//	loginreply.go      LoginReply: a login response recorded and replayed to a
//	                   later client of the same pool key; StripSessionRecovery
//	reset.go           MarkResetConnection, ResetMarker, ResetAckConsumer: reset a pooled
//	                   session for its next client, hide the acknowledgement
//
// Server tokens (§2.2.7), builders and decoders:
//
//	token.go           TokenType
//	message.go         ERROR/INFO (ServerMessage), ErrorMessage (ERROR+DONE)
//	done.go            DONE/DONEPROC/DONEINPROC, DoneStatus
//	loginack.go        LOGINACK
//	envchange.go       ENVCHANGE (all types) and constructors
//	featureextack.go   FEATUREEXTACK
//	colmetadata.go     COLMETADATA, Column
//	row.go, value.go   ROW/NBCROW and value encoding for common types
//	returnvalue.go     RETURNSTATUS, RETURNVALUE
//	typeinfo.go        TYPE_INFO (§2.2.5.6), DataType, Collation
//
// Response inspection:
//
//	scanner.go           Scanner: resumable token-stream walker (payload bytes)
//	response_scanner.go  ResponseScanner: same over raw packets, reports EOM
//
// Client requests (§2.2.5.3, §2.2.6):
//
//	allheaders.go      ALL_HEADERS (transaction descriptor)
//	sqlbatch.go        SQL_BATCH
//	rpc.go             RPC, ProcID (well-known procs), RPCParam accessors
//	transmgr.go        TRANSACTION MANAGER requests, AppendAttention
//	classify.go        ClassifyRequest/ClassifySQL: pinning-relevant facts;
//	                   BatchMayPin, the allocation-free prefilter for SQL_BATCH
//	requesttracker.go  RequestTracker: follows a relayed client stream by its
//	                   packet headers, keeps each message's first bytes
//	sqllex.go          the T-SQL lexer (LexSQL), shared with the stand-in
//
// Errors (errors.go): ErrShortBuffer means "feed more"; *ProtocolError is
// malformed peer input; *LimitError is a size bound exceeded; the scanner's
// *UnsupportedError means "cannot interpret exactly — stop inspecting and
// pin the session". None of them ever carries a password.
//
// # Lifecycle of a client connection through the proxy
//
//  1. Feed client bytes to a Reassembler; the first message is PRELOGIN
//     (DecodePrelogin). NegotiateEncryption(client, policy) gives the reply
//     byte and the mode; send ServerPreloginReply(...).AppendPrelogin framed
//     with AppendPackets(PacketReply, ...).
//  2. If the mode is full or login-only, create NewTLSServer and route all
//     wire bytes through Feed/TakeWire/TakePlain/Write; the plaintext is a
//     TDS packet stream for the same Reassembler.
//  3. The next message is LOGIN7: DecodeLogin7, then rewrite fields
//     (PacketSize, ServerName, RemoveFeature(FeatureSessionRecovery)) and
//     AppendLogin7 for the backend. Refuse with ErrorMessage(...).
//  4. Requests: Message.Status carries RESETCONNECTION; ClassifyRequest
//     tells transactions, prepares, cursors, temp tables and SET options.
//     Re-split with AppendPackets at each hop's negotiated packet size.
//  5. Responses: feed backend bytes to a ResponseScanner while forwarding
//     them; act on ENVCHANGE (begin/commit/rollback, database, packet size,
//     reset ack), DONE* and ERROR events; TokenEndOfMessage marks the end.
//     On any scanner error, stop inspecting and pin the session.
//
// # Threading
//
// Everything except TLSAdapter is plain data with no goroutines; a value
// belongs to the goroutine/thread that owns the connection. TLSAdapter runs
// crypto/tls on an internal goroutine but its methods are called from one
// owner thread and never wait on the network (see its doc comment).
// Slices returned by Reassembler.Next and Scanner.Feed alias internal
// buffers and are valid until the next call; events' own fields are copies.
//
// # Debugging
//
// Every message and token type has a String method for traces (passwords
// print as [REDACTED]). The fuzz targets (FuzzReassembler, FuzzPrelogin,
// FuzzLogin7, FuzzLoginReply, FuzzResetAckConsumer, FuzzScanner, FuzzRPC, FuzzTransMgr, FuzzClassifySQL,
// FuzzRequestTracker, FuzzBatchMayPinNeverHidesAPin, FuzzLexSQL) run on
// their seed corpus under plain `go test`; run one for longer with
//
//	go test ./tds -run XXX -fuzz '^FuzzScanner$' -fuzztime 10m
//
// testdata/captures holds PRELOGIN/LOGIN7/request bytes captured from
// go-mssqldb and FreeTDS tsql; the driver tests in standin/drivers_test.go
// record them in front of the stand-in and refresh them with
// TDS_UPDATE_CAPTURES=1.
//
// Assumptions: TDS 7.2+ on the server side of the scanner (12-byte DONE,
// 4-byte ERROR line numbers, mandatory ALL_HEADERS); no MARS; Always
// Encrypted, ALTMETADATA/ALTROW, DATACLASSIFICATION and the JSON/VECTOR
// types are reported as unsupported rather than skipped.
package tds
