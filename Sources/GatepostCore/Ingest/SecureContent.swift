import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMIME
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The S/MIME layers of a received message, taken off before it is classified: an encrypted
/// message (application/pkcs7-mime enveloped-data or authEnveloped-data) is decrypted, a signed
/// one (opaque signed-data, or multipart/signed with a detached signature) is verified against
/// the site's partner certificates, and what is inside is classified as usual. Then the site's
/// `smime.require` is applied. Any failure makes the message RECOVER, kept whole as received,
/// with the reason: never routed.
///
/// Everything streams through files in `tmp/`: a decrypted 1 GiB attachment is never in memory.
struct SecureContent: Sendable {
    struct Outcome {
        /// What to classify in place of the message (the decrypted content, or an opaque
        /// signature's content); nil: the message itself.
        var content: MessageIngest.Result?
        var security: MessageSecurity?
        /// Why the message is kept whole instead (a failed decryption or verification, a
        /// requirement not met).
        var failure: String?
        /// How it was signed, for the record's `signature`: verified or not.
        var signature: String?
        /// Every file made here (kept ones are kept by the assembler, the rest removed).
        var files: [String] = []
        /// Memory the content's bodies hold (``HeldBodies``): released with the message's.
        var heldBytes = 0
    }

    /// An encrypted message inside a signed one inside an encrypted one is as deep as AS1 goes.
    static let maxLayers = 4
    static let pkcs7MimeTypes: Set<String> = ["application/pkcs7-mime", "application/x-pkcs7-mime"]
    static let pkcs7SignatureTypes: Set<String> = ["application/pkcs7-signature", "application/x-pkcs7-signature"]

    let site: RemoteSite
    /// The site's keys and trust, loaded when a message first needs them. A failure to load
    /// them is the site's, not the message's: it is thrown, and the poll fails.
    let credentials: LazySMIMECredentials
    /// `tmp/<id>`: every file made here starts with it.
    let filePrefix: String
    /// The digest a signed receipt asks for (and its name as the partner wrote it), if one does.
    let receiptMIC: (algorithm: MICAlgorithm, name: String)?
    /// The addresses in the received message's From: whom a CA-issued signer must be.
    let senders: [String]

    /// Whether the message has anything for this step to do: S/MIME content, a site that
    /// requires it, or a signed receipt to compute a MIC for.
    static func applies(to message: MessageIngest.Result, site: RemoteSite, receiptRequested: Bool) -> Bool {
        guard message.parseError == nil, let top = message.parts.first else { return false }
        if receiptRequested || (site.smime?.require ?? .none) != .none { return true }
        return pkcs7MimeTypes.contains(top.contentType.mimeType) || (top.isMultipart && top.contentType.subtype == "signed")
    }

    func unwrap(_ message: MessageIngest.Result) throws(SMIMEError) -> Outcome {
        var outcome = Outcome()
        var security = MessageSecurity()
        var verifiedSignature = false
        /// Where the MIC of a signed receipt is computed: RFC 4130 section 7.3.1's convention
        /// (what was signed, else what was decrypted, else the body without the header).
        var micSource: MICSource = .body(message)
        var signatureLocked = false
        do {
            var current = message
            layers: for layer in 1 ... Self.maxLayers {
                guard current.parseError == nil, let top = current.parts.first else { break }
                if Self.pkcs7MimeTypes.contains(top.contentType.mimeType) {
                    guard let body = current.bodies[top.index] else { throw Failure("an S/MIME message without a body") }
                    let cmsFile = try fileHolding(body, path: "\(filePrefix).cms-\(layer)", files: &outcome.files)
                    let kind: CMSKind
                    do {
                        kind = try CMSSplitter.kind(of: cmsFile)
                    } catch {
                        throw Failure("an S/MIME message (\(top.contentType.mimeType)) that is no CMS structure: \(error)")
                    }
                    let output = "\(filePrefix).smime-\(layer)"
                    outcome.files.append(output)
                    switch kind {
                    case .enveloped, .authEnveloped:
                        guard let identity = try credentials.get()?.identity else {
                            throw Failure("an S/MIME encrypted message (\(kind)), but the site has no smime key to decrypt it")
                        }
                        do {
                            try CMS.decrypt(cmsFile: cmsFile, identity: identity, output: output, scratch: "\(filePrefix).cms-content-\(layer)")
                        } catch {
                            throw Failure("an S/MIME encrypted message (\(kind)) that cannot be decrypted: \(error)")
                        }
                        security.encrypted = kind.description
                        if !signatureLocked { micSource = .file(output) }
                    case .signed:
                        let scratch = "\(filePrefix).cms-content-\(layer)"
                        if let trust = try credentials.get()?.trust {
                            try verified("an S/MIME signed message (signed-data)", recording: &security) {
                                try CMS.verifyOpaque(cmsFile: cmsFile, trust: trust, output: output, scratch: scratch)
                            }
                            verifiedSignature = true
                            outcome.signature = "S/MIME (application/pkcs7-mime signed-data), verified"
                        } else {
                            // No partner certificates: the content is taken out unverified, as an
                            // unverified multipart/signed is classified by its content.
                            do {
                                _ = try CMSSplitter.split(input: cmsFile, contentOutput: output)
                            } catch {
                                throw Failure("an S/MIME signed message (signed-data) that cannot be read: \(error)")
                            }
                            outcome.signature = "S/MIME (application/pkcs7-mime signed-data), not verified: the site has no smime partner_certificates"
                        }
                        micSource = .file(output)
                        signatureLocked = true
                    case .compressed:
                        throw Failure("an S/MIME compressed message (RFC 3274 compressed-data), which Gatepost does not decompress")
                    case .other:
                        throw Failure("an S/MIME message holding \(kind), which is neither encrypted nor signed")
                    }
                    current = try adopt(file: output, layer: layer, into: &outcome)
                    continue layers
                }
                if top.isMultipart, top.contentType.subtype == "signed" {
                    let children = current.parts.filter { $0.parent == top.index }.map(\.index)
                    let signatureType = children.dropFirst().first.map { current.parts[$0].contentType.mimeType }
                        ?? top.contentType.parameters["protocol"]?.lowercased()
                    guard let signatureType, Self.pkcs7SignatureTypes.contains(signatureType) else {
                        // OpenPGP (or unknown): recognised, recorded as not verified.
                        outcome.signature = "\(Classifier.signatureTypes[signatureType ?? ""] ?? "signed") (\(signatureType ?? "multipart/signed")), not verified"
                        break layers
                    }
                    guard children.count >= 2, let signaturePart = current.bodies[children[1]],
                          let boundary = top.contentType.parameters["boundary"] else {
                        throw Failure("a multipart/signed message without its signature part")
                    }
                    let signed = "\(filePrefix).signed-\(layer)"
                    outcome.files.append(signed)
                    try extractSignedContent(of: current, boundary: boundary, to: signed)
                    if !signatureLocked { micSource = .file(signed) }
                    signatureLocked = true
                    if let trust = try credentials.get()?.trust {
                        let signature = try signaturePart.bytes(limit: 4 << 20)
                        try verified("an S/MIME signed message (multipart/signed)", recording: &security) {
                            try CMS.verifyDetached(content: signed, signature: signature, trust: trust)
                        }
                        verifiedSignature = true
                        outcome.signature = "S/MIME (\(signatureType)), verified"
                    } else {
                        outcome.signature = "S/MIME (\(signatureType)), not verified: the site has no smime partner_certificates"
                    }
                    // What is classified is exactly what was verified: the signed bytes, parsed
                    // again (the parser and the extractor could otherwise see different parts,
                    // and a replayed signature vouch for content it never covered).
                    current = try adopt(file: signed, layer: layer, into: &outcome)
                    continue layers
                }
                break layers
            }
            if Self.isSMIMELayer(current) {
                throw Failure("an S/MIME message wrapped more than \(Self.maxLayers) times (encrypted or signed layers), which is more than Gatepost unwraps")
            }
            // A report (an MDN, a mail system's DSN) carries no file: `require` is for what is
            // routed. A receipt is judged by the transfer it answers (a signed receipt asked
            // for is only accepted signed, ``AcknowledgmentRules``).
            let require = Self.isReport(current) ? .none : site.smime?.require ?? .none
            if require.needsEncryption, security.encrypted == nil {
                throw Failure("smime.require is \(require.rawValue), but the message is not encrypted (S/MIME)")
            }
            if require.needsSignature, !verifiedSignature {
                throw Failure("smime.require is \(require.rawValue), but the message has no S/MIME signature")
            }
            if let receiptMIC {
                security.mic = try micSource.mic(receiptMIC.algorithm, named: receiptMIC.name)
            }
        } catch let failure as Failure {
            outcome.failure = failure.description
        } catch let error as SMIMEError {
            if case .credentials = error {
                // The poll fails and the message stays on the server: nothing of it stays here.
                for path in outcome.files { unlink(path) }
                HeldBodies.release(outcome.heldBytes)
                throw error
            }
            outcome.failure = "S/MIME: \(error)"
        } catch {
            outcome.failure = "S/MIME: \(error)"
        }
        if security != MessageSecurity() { outcome.security = security }
        return outcome
    }

    /// Runs a verification and records its outcome: the signer, or why the signature does not
    /// vouch for the message (it does not verify, or its signer does not speak for the partner:
    /// ``SMIMESettings/refusal(of:messageFrom:)``, against the From of the message as received).
    private func verified(
        _ what: String, recording security: inout MessageSecurity, _ verify: () throws -> SignatureVerification
    ) throws {
        let verification: SignatureVerification
        do {
            verification = try verify()
        } catch {
            security.signatureFailure = "\(error)"
            throw Failure("\(what): \(error)")
        }
        let settings = site.smime
        for signer in verification.details {
            if let refusal = settings?.refusal(of: signer, messageFrom: senders) {
                security.signatureFailure = refusal
                throw Failure("\(what): \(refusal)")
            }
        }
        security.signedBy = verification.signers.first
    }

    /// A layer's content (decrypted, or what a signature covers), parsed: it becomes what is
    /// classified, and its files and memory are the outcome's.
    private func adopt(file path: String, layer: Int, into outcome: inout Outcome) throws -> MessageIngest.Result {
        let (inner, held) = try ingest(file: path, layer: layer)
        outcome.heldBytes += held
        outcome.files += inner.createdFiles
        outcome.content = inner
        return inner
    }

    /// Whether the message's top is still an S/MIME layer: encrypted or signed content, or a
    /// multipart/signed with an S/MIME signature.
    static func isSMIMELayer(_ message: MessageIngest.Result) -> Bool {
        guard message.parseError == nil, let top = message.parts.first else { return false }
        if pkcs7MimeTypes.contains(top.contentType.mimeType) { return true }
        guard top.isMultipart, top.contentType.subtype == "signed" else { return false }
        let signatureType = message.parts.filter { $0.parent == top.index }.dropFirst().first?.contentType.mimeType
            ?? top.contentType.parameters["protocol"]?.lowercased()
        return signatureType.map(pkcs7SignatureTypes.contains) ?? false
    }

    /// Whether the message (past its signatures) is a multipart/report.
    static func isReport(_ message: MessageIngest.Result) -> Bool {
        guard var root = message.parts.first else { return false }
        while root.isMultipart, root.contentType.subtype == "signed",
              let content = message.parts.first(where: { $0.parent == root.index }) {
            root = content
        }
        return root.isMultipart && root.contentType.subtype == "report"
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String

        init(_ description: String) {
            self.description = description
        }
    }

    /// Where a receipt's MIC is computed.
    enum MICSource {
        /// The received message's body, without its header (an unsigned, unencrypted message).
        case body(MessageIngest.Result)
        /// What was signed or decrypted: a MIME entity, header included.
        case file(String)

        func mic(_ algorithm: MICAlgorithm, named name: String) throws -> String {
            switch self {
            case .file(let path):
                return try MICHasher.mic(ofFile: path, algorithm: algorithm, named: name)
            case .body(let message):
                var hasher = MICHasher(algorithm)
                var skipper = HeaderSkipper()
                try message.scratch.read { chunk in
                    skipper.body(of: chunk) { hasher.update($0) }
                }
                return hasher.mic(named: name)
            }
        }
    }

    /// The bytes after the first empty line.
    struct HeaderSkipper {
        private var inBody = false
        /// The last bytes of the header seen: "\n" then optionally "\r".
        private var lineStart = true

        mutating func body(of chunk: UnsafeRawBufferPointer, _ output: (UnsafeRawBufferPointer) -> Void) {
            guard !inBody else { return output(chunk) }
            for index in chunk.indices {
                let byte = chunk[index]
                if byte == 0x0A, lineStart {
                    inBody = true
                    output(UnsafeRawBufferPointer(rebasing: chunk[(index + 1)...]))
                    return
                }
                if byte == 0x0A {
                    lineStart = true
                } else if byte != 0x0D {
                    lineStart = false
                }
            }
        }
    }

    /// A body's bytes in a file: its own, or written out from memory.
    private func fileHolding(_ body: PartBody, path: String, files: inout [String]) throws -> String {
        switch body.storage {
        case .file(let existing):
            return existing
        case .memory(let bytes):
            files.append(path)
            let writer = try SpoolFileWriter(path: path, hashing: false)
            try writer.write(contentsOf: bytes)
            _ = try writer.finish()
            return path
        }
    }

    /// The raw bytes a multipart/signed signs, from the message as received.
    private func extractSignedContent(of message: MessageIngest.Result, boundary: String, to path: String) throws {
        let writer = try SpoolFileWriter(path: path, hashing: false)
        var extractor = SignedContentExtractor(boundary: boundary)
        try message.scratch.read { chunk in
            try extractor.feed(chunk) { try writer.write($0) }
        }
        _ = try writer.finish()
        guard extractor.isComplete else { throw Failure("a multipart/signed message whose signed part does not end with its boundary") }
    }

    /// A decrypted or signed content (a MIME entity) parsed as a message of its own, and the
    /// memory its bodies hold.
    private func ingest(file path: String, layer: Int) throws -> (MessageIngest.Result, Int) {
        let scratch = RawMessageScratch(folder: (filePrefix as NSString).deletingLastPathComponent)
        let ingest = try MessageIngest(
            filePrefix: "\(filePrefix).layer-\(layer)", raw: scratch, limits: site.poll.limits, maxSize: site.poll.maxMessageSize
        )
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SpoolError("open", path: path, errno: errno) }
        defer { try? handle.close() }
        do {
            while let chunk = try handle.read(upToCount: 256 << 10), !chunk.isEmpty {
                try ingest.consume(ByteBuffer(bytes: chunk))
            }
            return (try ingest.finish(), ingest.heldBytes)
        } catch {
            ingest.discard()
            HeldBodies.release(ingest.heldBytes)
            throw error
        }
    }
}
