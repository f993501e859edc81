import Foundation

/// What S/MIME did to a transfer, as evidence: how it was encrypted and signed, by whom, and the
/// message integrity checks (MICs) of signed receipts (RFC 3335, the convention of RFC 4130
/// section 7.3.1).
///
/// Inbound, `mic` is what this gateway computed over the content as received (returned in its
/// signed receipt); in a received report (EERP), `receivedContentMIC` is what the partner says
/// it computed. Outbound, `mic` is what this gateway computed over what it sent, and `receipt`
/// the partner's signed receipt once it came back.
public struct MessageSecurity: Codable, Sendable, Hashable {
    /// The CMS structure that was decrypted ("enveloped-data", "authEnveloped-data"); outbound,
    /// the cipher it was encrypted with.
    public var encrypted: String?
    /// The verified signer's certificate subject (RFC 2253), inbound; outbound, our own.
    public var signedBy: String?
    /// Why a signature did not verify, when it did not.
    public var signatureFailure: String?
    /// "<base64 digest>, <algorithm>", as in Received-Content-MIC.
    public var mic: String?
    /// A report's Received-Content-MIC field, as the partner wrote it.
    public var receivedContentMIC: String?
    /// Outbound: a signed receipt was asked for.
    public var signedReceiptRequested: Bool?
    /// Outbound: the signed receipt that acknowledged the transfer.
    public var receipt: SignedReceipt?

    public init(
        encrypted: String? = nil, signedBy: String? = nil, signatureFailure: String? = nil, mic: String? = nil,
        receivedContentMIC: String? = nil, signedReceiptRequested: Bool? = nil, receipt: SignedReceipt? = nil
    ) {
        self.encrypted = encrypted
        self.signedBy = signedBy
        self.signatureFailure = signatureFailure
        self.mic = mic
        self.receivedContentMIC = receivedContentMIC
        self.signedReceiptRequested = signedReceiptRequested
        self.receipt = receipt
    }

    /// A signed receipt's evidence: who signed it, the MIC it returned, when it came, and the
    /// transfer (EERP) that holds it.
    public struct SignedReceipt: Codable, Sendable, Hashable {
        public var signedBy: String
        public var mic: String
        public var receivedAt: Date
        public var transferId: String

        public init(signedBy: String, mic: String, receivedAt: Date, transferId: String) {
            self.signedBy = signedBy
            self.mic = mic
            self.receivedAt = receivedAt
            self.transferId = transferId
        }
    }

    /// The evidence as labelled lines, for the console's transfer page and `catalog show`.
    public var lines: [(label: String, value: String)] {
        var lines: [(String, String?)] = [
            ("encrypted", encrypted), ("signed by", signedBy), ("signature failure", signatureFailure), ("MIC", mic),
            ("received content MIC", receivedContentMIC),
            ("signed receipt", signedReceiptRequested == true && receipt == nil ? "asked for, not received yet" : nil),
        ]
        if let receipt {
            let time = ISO8601DateFormatter().string(from: receipt.receivedAt)
            lines.append(("signed receipt", "from \(receipt.signedBy), MIC \(receipt.mic), \(time), transfer \(receipt.transferId)"))
        }
        return lines.compactMap { label, value in value.map { (label, $0) } }
    }

    /// Two MICs are the same when their digests are equal and their algorithms name the same
    /// function ("sha-256" and "sha256", "sha1" and "sha-1" alike).
    public static func sameMIC(_ first: String, _ second: String) -> Bool {
        func parts(_ mic: String) -> (digest: String, algorithm: String)? {
            let fields = mic.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 2, !fields[0].isEmpty else { return nil }
            return (fields[0], fields[1].lowercased().replacingOccurrences(of: "-", with: ""))
        }
        guard let one = parts(first), let other = parts(second) else { return false }
        return one.digest == other.digest && one.algorithm == other.algorithm
    }
}
