import Foundation
import GatepostCatalog
import GatepostMIME
import GatepostSMIME
import GatepostTestSupport
import Testing
@testable import GatepostCore

/// The `smime:` block and what a sender's Disposition-Notification-Options ask of it.
@Suite(.serialized) final class SMIMESettingsTests {
    let pki: SMIMETestPKI
    let us: SMIMETestPKI.Party
    let file: String

    init() async throws {
        pki = try await SMIMETestPKI()
        us = try await pki.issue("us")
        file = pki.path("acme.yaml")
    }

    deinit { pki.remove() }

    func load(_ smime: String) throws -> RemoteSite {
        try #require(try SiteLoader(environment: [:]).parse("""
            pop3: {host: pop.example, user: u, password: p}
            smtp: {host: smtp.example, from: gateway@ours.example}
            \(smime)
            """, file: file))
    }

    func error(_ smime: String) -> SiteConfigurationError? {
        do {
            _ = try load(smime)
            return nil
        } catch {
            return (error as? SiteConfigurationError)?.all.first
        }
    }

    @Test func aCompleteBlockLoads() async throws {
        let site = try load("""
            smime:
              key: us.key
              certificate: us.pem
              password: ${NOT_NEEDED_FOR_AN_UNENCRYPTED_KEY}
              partner_certificates: [ca.pem]
              require: both
              sign: true
              encrypt: true
              cipher: AES-128-GCM
              digest: sha256
            """)
        let smime = try #require(site.smime)
        #expect(smime.key == .pem(key: us.keyFile, certificate: us.certificateFile), "paths relative to the site file")
        #expect(smime.partnerCertificates == [pki.caFile])
        #expect(smime.require == .both && smime.sign && smime.encrypt)
        #expect(smime.cipher == "aes-128-gcm" && smime.digest == .sha256)
        #expect(site.unavailableSecrets.count == 1, "the unset variable is said, the site still loads")
        #expect(site.clientCertificateFiles.map(\.field).contains("smime.certificate"), "its expiry is watched")
    }

    @Test func mistakesNameTheFieldAndLine() {
        let cases: [(String, String, String)] = [
            ("smime:\n  key: us.key", "smime.key", "needs certificate"),
            ("smime:\n  pkcs12: us.p12\n  key: us.key\n  certificate: us.pem", "smime.pkcs12", "not both"),
            ("smime:\n  pkcs12: missing.p12", "smime.pkcs12", "cannot read"),
            ("smime:\n  partner_certificates: [us.key]", "smime.partner_certificates[0]", "no certificate"),
            ("smime:\n  key: us.key\n  certificate: us.pem\n  require: always", "smime.require", "none, signed, encrypted or both"),
            ("smime:\n  partner_certificates: [ca.pem]\n  require: encrypted", "smime.require", "needs our key"),
            ("smime:\n  key: us.key\n  certificate: us.pem\n  require: signed", "smime.require", "needs partner_certificates"),
            ("smime:\n  key: us.key\n  certificate: us.pem\n  cipher: des-cbc", "smime.cipher", "aes-256-cbc"),
            ("smime:\n  key: us.key\n  certificate: us.pem\n  digest: md5", "smime.digest", "sha-256"),
            ("smime:\n  partner_certificates: [ca.pem]\n  sign: true", "smime.sign", "needs our key"),
            ("smime:\n  key: us.key\n  certificate: us.pem\n  partner_signers: [edi@acme.example]", "smime.partner_signers", "needs partner_certificates"),
        ]
        for (text, field, message) in cases {
            let error = self.error(text)
            #expect(error?.file == file, "\(text)")
            #expect(error?.field == field, "\(text): \(error.map { "\($0)" } ?? "no error")")
            #expect(error?.line != nil, "\(text)")
            #expect(error?.message.contains(message) == true, "\(text): \(error?.message ?? "-")")
        }
    }

    /// A CA in partner_certificates vouches for a certificate, not for whose it is: a signer it
    /// issued must be for S/MIME signing and for the partner's address (the message's From, or
    /// partner_signers). A certificate listed itself is believed as it is.
    @Test func aSignerTrustedThroughACAMustBeThePartner() async throws {
        let content = pki.path("content.txt")
        try Data("invoice 42\r\n".utf8).write(to: URL(fileURLWithPath: content))
        func signer(_ party: SMIMETestPKI.Party, trusting files: [String]) async throws -> SignatureVerification.Signer {
            let signature = pki.path("\(party.name).der")
            try await SMIMETestPKI.openssl([
                "cms", "-sign", "-binary", "-in", content, "-signer", party.certificateFile, "-inkey", party.keyFile,
                "-outform", "DER", "-out", signature,
            ])
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: signature)))
            return try #require(try CMS.verifyDetached(content: content, signature: bytes, trust: try SMIMETrust(files: files)).details.first)
        }
        let acme = try await signer(try await pki.issue("acme-signer", email: "edi@acme.example"), trusting: [pki.caFile])
        let stranger = try await pki.issue("other-customer", email: "someone@else.example")
        let other = try await signer(stranger, trusting: [pki.caFile])
        let server = try await signer(
            try await pki.issue("acme-server", email: "edi@acme.example", extensions: ["extendedKeyUsage = serverAuth"]), trusting: [pki.caFile]
        )
        #expect(!acme.isPinned && acme.isForSMIMESigning && acme.emails == ["edi@acme.example"])
        #expect(!server.isForSMIMESigning)

        let byCA = try #require(try load("smime:\n  partner_certificates: [ca.pem]").smime)
        #expect(byCA.refusal(of: acme, messageFrom: ["EDI@acme.example"]) == nil, "addresses compare without case")
        #expect(byCA.refusal(of: other, messageFrom: ["edi@acme.example"])?.contains("not for the message's From") == true)
        #expect(byCA.refusal(of: acme, messageFrom: [])?.contains("not for the message's From (none)") == true)
        #expect(byCA.refusal(of: server, messageFrom: ["edi@acme.example"])?.contains("not for S/MIME signing") == true)

        let named = try #require(try load("smime:\n  partner_certificates: [ca.pem]\n  partner_signers: [edi@acme.example]").smime)
        #expect(named.refusal(of: acme, messageFrom: ["gateway@acme.example"]) == nil, "partner_signers, not From, names the signer")
        #expect(named.refusal(of: other, messageFrom: ["someone@else.example"])?.contains("not among smime.partner_signers") == true)
        let bySubject = try #require(try load("smime:\n  partner_certificates: [ca.pem]\n  partner_signers: ['\(acme.subject)']").smime)
        #expect(bySubject.refusal(of: acme, messageFrom: []) == nil)

        // The stranger's own certificate listed: pinned, believed whatever the From.
        let pinned = try await signer(stranger, trusting: [stranger.certificateFile])
        #expect(pinned.isPinned)
        #expect(byCA.refusal(of: pinned, messageFrom: []) == nil)
    }

    static func header(_ options: String?) -> MessageHeader {
        var fields = [HeaderField(name: "Return-Path", value: "<a@p.example>"), HeaderField(name: "Disposition-Notification-To", value: "a@p.example")]
        if let options { fields.append(HeaderField(name: "Disposition-Notification-Options", value: options)) }
        return MessageHeader(fields: fields)
    }

    @Test func theReceiptIsWhatTheSenderAskedAndWeCanGive() async throws {
        let signing = try load("smime:\n  key: us.key\n  certificate: us.pem")
        let unsigned = try load("")
        let form = { (options: String?, site: RemoteSite) in AcknowledgmentPolicy.receiptForm(header: Self.header(options), site: site) }
        // RFC 3335's own example, and the usual AS1 spellings.
        #expect(form("signed-receipt-protocol=required, pkcs7-signature; signed-receipt-micalg=required, sha1, md5", signing) == .signed(.sha1, name: "sha1"))
        #expect(form("signed-receipt-protocol=optional,pkcs7-signature; signed-receipt-micalg=optional,SHA-256,sha1", signing) == .signed(.sha256, name: "sha-256"))
        #expect(form("signed-receipt-protocol=optional, pkcs7-signature", signing) == .signed(.sha256, name: "sha-256"))
        #expect(form(nil, signing) == .unsigned)
        // Optional and not possible: an unsigned MDN. Required and not possible: said in an error MDN.
        #expect(form("signed-receipt-protocol=optional, pkcs7-signature", unsigned) == .unsigned)
        guard case .cannotMeet(let noKey) = form("signed-receipt-protocol=required, pkcs7-signature", unsigned) else {
            Issue.record("a required signed receipt without a key is not said")
            return
        }
        #expect(noKey.contains("no smime key"))
        guard case .cannotMeet(let md5) = form("signed-receipt-protocol=required, pkcs7-signature; signed-receipt-micalg=required, md5", signing) else {
            Issue.record("md5 only is not said")
            return
        }
        #expect(md5.contains("signed-receipt-micalg md5"))
        guard case .cannotMeet(let other) = form("x-partner-thing=required, yes", signing) else {
            Issue.record("an unknown required option is not said")
            return
        }
        #expect(other.contains("x-partner-thing"))
        #expect(form("x-partner-thing=optional, yes", signing) == .unsigned)
        // A digest is computed only when a signed receipt will be given.
        #expect(AcknowledgmentPolicy.receiptMIC(header: Self.header("signed-receipt-protocol=optional, pkcs7-signature"), site: unsigned) == nil)
        #expect(AcknowledgmentPolicy.receiptMIC(header: Self.header("signed-receipt-protocol=optional, pkcs7-signature"), site: signing)?.algorithm == .sha256)
    }
}
