import Foundation
import GatepostSMIME
import GatepostTestSupport
import Testing

/// Every structure decrypted or verified here was made by the `openssl cms` command; everything
/// this module makes is checked by it.
@Suite(.serialized) final class CMSTests {
    let pki: SMIMETestPKI
    let us: SMIMETestPKI.Party
    let partner: SMIMETestPKI.Party
    let ecPartner: SMIMETestPKI.Party
    let ecUs: SMIMETestPKI.Party
    let content: String

    /// Keys and certificates made once for the suite (RSA key generation is slow on a busy
    /// machine); the files live in the run's temporary folder, removed with it.
    struct Shared: Sendable {
        let pki: SMIMETestPKI
        let us, partner, ecPartner, ecUs: SMIMETestPKI.Party
        let content: String
    }

    static let shared = Task<Shared, any Error> {
        let pki = try await SMIMETestPKI()
        let content = pki.path("content.bin")
        // Bytes of every value, and more than one of OpenSSL's 4 KiB chunks.
        var bytes = [UInt8]()
        for index in 0 ..< 150_000 { bytes.append(UInt8(truncatingIfNeeded: index &* 7 &+ index >> 8)) }
        try Data(bytes).write(to: URL(fileURLWithPath: content))
        return Shared(
            pki: pki, us: try await pki.issue("gatepost-us"), partner: try await pki.issue("acme-edi"),
            ecPartner: try await pki.issue("acme-ec", key: .ec), ecUs: try await pki.issue("gatepost-ec", key: .ec), content: content
        )
    }

    init() async throws {
        let shared = try await Self.shared.value
        (pki, us, partner, ecPartner, ecUs, content) = (shared.pki, shared.us, shared.partner, shared.ecPartner, shared.ecUs, shared.content)
    }

    func identity(_ party: SMIMETestPKI.Party) throws -> SMIMEIdentity {
        try SMIMEIdentity.pem(keyFile: party.keyFile, certificateFile: party.certificateFile, password: nil)
    }

    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test(arguments: [
        ("aes-256-cbc", SMIMETestPKI.KeyType.rsa, false),
        ("aes-128-cbc", .rsa, true),
        ("aes-128-cbc", .ec, false),
        ("aes-256-gcm", .rsa, false),
        ("aes-128-gcm", .ec, true),
    ])
    func decryptsWhatOpenSSLEncrypted(cipher: String, key: SMIMETestPKI.KeyType, streamed: Bool) async throws {
        let recipient = key == .rsa ? us : ecUs
        let encrypted = pki.path("encrypted-\(cipher)-\(key)-\(streamed).der")
        // -stream writes BER with indefinite lengths and the content in segments, as streaming
        // gateways do.
        try await SMIMETestPKI.openssl(
            ["cms", "-encrypt", "-binary", "-\(cipher)", "-in", content, "-outform", "DER", "-out", encrypted]
                + (streamed ? ["-stream"] : []) + [recipient.certificateFile]
        )
        let output = pki.path("decrypted-\(cipher)-\(key)-\(streamed)")
        let kind = try CMS.decrypt(cmsFile: encrypted, identity: try identity(recipient), output: output, scratch: output + ".scratch")
        #expect(kind == (cipher.hasSuffix("gcm") ? .authEnveloped : .enveloped))
        #expect(try bytes(output) == bytes(content))
        #expect(!FileManager.default.fileExists(atPath: output + ".scratch"))
    }

    @Test func aMessageForSomeoneElseIsSaidSo() async throws {
        let encrypted = pki.path("for-partner.der")
        try await SMIMETestPKI.openssl(["cms", "-encrypt", "-binary", "-aes256", "-in", content, "-outform", "DER", "-out", encrypted, partner.certificateFile])
        let output = pki.path("not-for-us")
        #expect {
            try CMS.decrypt(cmsFile: encrypted, identity: try identity(us), output: output, scratch: output + ".scratch")
        } throws: { error in
            guard case SMIMEError.notForUs = error else { return false }
            return "\(error)".contains("another recipient")
        }
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func aDamagedCiphertextFailsAndLeavesNoOutput() async throws {
        let encrypted = pki.path("damaged.der")
        try await SMIMETestPKI.openssl(["cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", content, "-outform", "DER", "-out", encrypted, us.certificateFile])
        var data = try bytes(encrypted)
        data[data.count - 200] ^= 0x55  // in the ciphertext, before the tag
        try data.write(to: URL(fileURLWithPath: encrypted))
        let output = pki.path("damaged-out")
        #expect(throws: SMIMEError.self) {
            try CMS.decrypt(cmsFile: encrypted, identity: try identity(us), output: output, scratch: output + ".scratch")
        }
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test(arguments: [SMIMETestPKI.KeyType.rsa, .ec])
    func verifiesOpaqueAndDetachedSignaturesOfOpenSSL(key: SMIMETestPKI.KeyType) async throws {
        let signer = key == .rsa ? partner : ecPartner
        let trust = try SMIMETrust(files: [pki.caFile])
        let opaque = pki.path("opaque-\(key).der")
        try await SMIMETestPKI.openssl(["cms", "-sign", "-nodetach", "-binary", "-stream", "-in", content, "-signer", signer.certificateFile, "-inkey", signer.keyFile, "-outform", "DER", "-out", opaque])
        let output = pki.path("opaque-content-\(key)")
        let verified = try CMS.verifyOpaque(cmsFile: opaque, trust: trust, output: output, scratch: output + ".scratch")
        #expect(verified.signers == [signer.subject])
        #expect(try bytes(output) == bytes(content))

        let detached = pki.path("detached-\(key).der")
        try await SMIMETestPKI.openssl(["cms", "-sign", "-binary", "-in", content, "-signer", signer.certificateFile, "-inkey", signer.keyFile, "-outform", "DER", "-out", detached])
        let signature = try [UInt8](bytes(detached))
        #expect(try CMS.verifyDetached(content: content, signature: signature, trust: trust).signers == [signer.subject])
    }

    @Test func aChangedContentIsATamperedSignature() async throws {
        let detached = pki.path("tampered.der")
        try await SMIMETestPKI.openssl(["cms", "-sign", "-binary", "-in", content, "-signer", partner.certificateFile, "-inkey", partner.keyFile, "-outform", "DER", "-out", detached])
        var changed = try bytes(content)
        changed[1000] ^= 1
        let changedFile = pki.path("changed.bin")
        try changed.write(to: URL(fileURLWithPath: changedFile))
        #expect {
            try CMS.verifyDetached(content: changedFile, signature: [UInt8](try bytes(detached)), trust: try SMIMETrust(files: [pki.caFile]))
        } throws: { error in
            guard case SMIMEError.signatureInvalid = error else { return false }
            return "\(error)".contains("changed after it was signed")
        }
    }

    @Test func aSignerTheSiteDoesNotTrustIsRefused() async throws {
        let stranger = try await SMIMETestPKI()
        defer { stranger.remove() }
        let mallory = try await stranger.issue("mallory")
        let detached = pki.path("stranger.der")
        try await SMIMETestPKI.openssl(["cms", "-sign", "-binary", "-in", content, "-signer", mallory.certificateFile, "-inkey", mallory.keyFile, "-outform", "DER", "-out", detached])
        #expect {
            try CMS.verifyDetached(content: content, signature: [UInt8](try bytes(detached)), trust: try SMIMETrust(files: [pki.caFile]))
        } throws: { error in
            "\(error)".contains("not trusted")
        }
        // Trusting the partner's own certificate (no CA) is enough.
        let direct = try CMS.verifyDetached(
            content: content, signature: [UInt8](try bytes(detached)), trust: try SMIMETrust(files: [mallory.certificateFile])
        )
        #expect(direct.signers == [mallory.subject])
    }

    @Test func anExpiredSignerIsRefused() async throws {
        let expired = try pki.expired("acme-expired")
        let detached = pki.path("expired.der")
        try await SMIMETestPKI.openssl(["cms", "-sign", "-binary", "-in", content, "-signer", expired.certificateFile, "-inkey", expired.keyFile, "-outform", "DER", "-out", detached])
        #expect {
            try CMS.verifyDetached(content: content, signature: [UInt8](try bytes(detached)), trust: try SMIMETrust(files: [expired.certificateFile]))
        } throws: { error in
            "\(error)".contains("expired")
        }
    }

    @Test(arguments: ["sha256", "sha1", "sha512"])
    func ourSignatureVerifiesWithOpenSSL(digest: String) async throws {
        let signature = try CMS.signDetached(content: content, identity: try identity(us), digest: digest)
        let file = pki.path("our-signature-\(digest).der")
        try Data(signature).write(to: URL(fileURLWithPath: file))
        try await SMIMETestPKI.openssl(["cms", "-verify", "-binary", "-inform", "DER", "-in", file, "-content", content, "-CAfile", pki.caFile, "-purpose", "any", "-out", "/dev/null"])
        // And our verification agrees.
        #expect(try CMS.verifyDetached(content: content, signature: signature, trust: try SMIMETrust(files: [pki.caFile])).signers == [us.subject])
    }

    @Test(arguments: ["aes-256-cbc", "aes-128-gcm"])
    func whatWeEncryptOpenSSLDecrypts(cipher: String) async throws {
        let encrypted = pki.path("ours-\(cipher).der")
        try CMS.encrypt(content: content, recipients: try SMIMECertificate.load(file: partner.certificateFile), cipher: cipher, output: encrypted)
        let decrypted = pki.path("ours-\(cipher).out")
        try await SMIMETestPKI.openssl(["cms", "-decrypt", "-binary", "-inform", "DER", "-in", encrypted, "-recip", partner.certificateFile, "-inkey", partner.keyFile, "-out", decrypted])
        #expect(try bytes(decrypted) == bytes(content))
    }

    @Test func pkcs12IdentitiesOpenWithTheirPasswordOnly() async throws {
        let identity = try SMIMEIdentity.pkcs12(file: us.pkcs12File, password: us.pkcs12Password)
        #expect(identity.certificate.subject == us.subject)
        #expect(identity.chain.count == 1)
        #expect {
            try SMIMEIdentity.pkcs12(file: us.pkcs12File, password: "wrong")
        } throws: { error in
            "\(error)".contains("wrong password")
        }
        #expect {
            try SMIMEIdentity.pem(keyFile: us.keyFile, certificateFile: partner.certificateFile, password: nil)
        } throws: { error in
            "\(error)".contains("do not belong together")
        }
    }

    @Test func brokenStructuresAreMalformedNotCrashes() async throws {
        let output = pki.path("broken-out")
        let valid = pki.path("valid.der")
        try await SMIMETestPKI.openssl(["cms", "-encrypt", "-binary", "-aes256", "-stream", "-in", content, "-outform", "DER", "-out", valid, us.certificateFile])
        let whole = try bytes(valid)
        var cases: [Data] = [Data(), Data("not DER at all".utf8), whole.prefix(40), whole.prefix(whole.count / 2)]
        cases.append(Data([0x30, 0x80] + [UInt8](repeating: 0x30, count: 200) + [0x80]))  // deep nesting
        cases.append(Data([0x30, 0x89, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))  // a length too long
        // Empty elements cost memory though they carry no bytes: 1.5 million of them are refused.
        let signedData: [UInt8] = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02]
        cases.append(Data([0x30, 0x80] + signedData + [UInt8](repeating: 0, count: 3_000_000).enumerated().map { $0.offset % 2 == 0 ? 0x05 : 0x00 }))
        for (number, data) in cases.enumerated() {
            let file = pki.path("broken-\(number).der")
            try data.write(to: URL(fileURLWithPath: file))
            #expect(throws: SMIMEError.self) {
                try CMS.decrypt(cmsFile: file, identity: try identity(us), output: output, scratch: output + ".scratch")
            }
            #expect(!FileManager.default.fileExists(atPath: output))
        }
    }

    @Test func theSplitStructureIsSmallWhateverTheContent() async throws {
        let encrypted = pki.path("split.der")
        try await SMIMETestPKI.openssl(["cms", "-encrypt", "-binary", "-aes256", "-stream", "-in", content, "-outform", "DER", "-out", encrypted, us.certificateFile])
        let split = try CMSSplitter.split(input: encrypted, contentOutput: pki.path("split.content"))
        #expect(split.kind == .enveloped)
        #expect(split.hadContent)
        #expect(split.detachedStructure.count < 2048)
        // AES-CBC: the content padded to the next block.
        #expect(split.contentSize == (150_000 / 16 + 1) * 16)
        #expect(try CMSSplitter.kind(of: encrypted) == .enveloped)
    }
}
