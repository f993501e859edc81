import NIOCore
import NIOPosix
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// What the protocol clients share about TLS and about saying why a connection failed, so POP3
/// and SMTP (and whatever comes next) configure and word them once.
public enum Wire {
    /// The name to send in SNI and check in the certificate; nil for an IP literal (NIOSSL then
    /// checks the certificate against the connected address).
    public static func tlsServerName(forHost host: String) -> String? {
        let isIPv4 = host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
        return isIPv4 || host.contains(":") ? nil : host
    }

    /// The configured TLS settings with a short close_notify wait: a connection we abandon (a
    /// poll cancelled at shutdown) must not linger while the server is still sending.
    public static func clientTLS(_ configured: TLSConfiguration) -> TLSConfiguration {
        var tls = configured
        tls.shutdownTimeout = min(tls.shutdownTimeout, .milliseconds(500))
        return tls
    }

    /// A short, operator-readable reason for a connection failure.
    public static func describeConnectionFailure(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first {
                return describeConnectionFailure(first.error)
            }
            if error.dnsAError != nil || error.dnsAAAAError != nil {
                return "cannot resolve the host name"
            }
            return "no address to connect to"
        }
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode)).lowercased()
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "connection timed out"
        }
        return "\(error)"
    }

    /// A short reason for a TLS failure (the library's text names source files and codes);
    /// `notTLSHint` is what to check when the peer answered without TLS (a plain port).
    public static func describeTLSFailure(_ error: any Error, notTLSHint: String) -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "the server certificate is not valid for this host name"
        }
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server certificate could not be verified (untrusted issuer, expired, or not for this host)"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
            return "the server did not answer with TLS (\(notTLSHint))"
        }
        if case .handshakeFailed(let inner)? = error as? NIOSSLError {
            return "handshake failed: \(inner)"
        }
        return text
    }

    /// Puts TLS in front of everything else once the server accepted STLS or STARTTLS, and
    /// returns how many bytes the connection had passed to the session until then, in clear. The
    /// count is taken on the event loop in the same step that adds TLS, so it is exact: when the
    /// session has read fewer, the rest is plaintext that arrived after the server's "go ahead"
    /// and before the handshake (a man in the middle's injection, CVE-2011-0411 and kin), and
    /// must never be read as if it came over TLS.
    public static func startTLS(
        on channel: any Channel, context: NIOSSLContext, serverName: String?, silence: ServerSilenceTimeout
    ) async throws -> Int {
        try await channel.eventLoop.submit {
            let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            return silence.bytesDelivered.load(ordering: .relaxed)
        }.get()
    }
}
