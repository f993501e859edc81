import Foundation

/// An SAP BTP destination of type MAIL, dropped into `sites/` as exported. Its properties are
/// flat keys with dots (`mail.pop3s.host`); the store protocol decides the POP3 security:
/// `pop3s` is implicit TLS, `pop3` is STLS when `mail.pop3.starttls.enable` is true and plain
/// otherwise (which then refuses to send the password, as for any site).
enum BTPMailDestination {
    static func site(from map: ConfigMapping, defaultName: String, loader: SiteLoader) throws -> RemoteSite {
        func value(_ key: String) throws -> String? {
            try map[key]?.string().trimmingCharacters(in: .whitespaces)
        }
        let name = try value("Name") ?? defaultName
        try SiteLoader.validateSiteName(name, node: map["Name"] ?? map.owner)

        let host: String
        let portNode: ConfigNode?
        let security: RemoteSite.POP3.SecurityMode
        if let pop3s = try value("mail.pop3s.host") {
            host = pop3s
            portNode = map["mail.pop3s.port"]
            security = .tls
        } else if let pop3 = try value("mail.pop3.host") {
            host = pop3
            portNode = map["mail.pop3.port"]
            security = try map["mail.pop3.starttls.enable"]?.bool() == true ? .starttls : .none
        } else {
            throw map.owner.error("a MAIL destination needs mail.pop3s.host or mail.pop3.host for Gatepost to poll")
        }
        guard let user = try value("mail.user") ?? value("User"), !user.isEmpty else {
            throw map.owner.error("a MAIL destination needs mail.user (or User)")
        }
        let passwordNode = map["mail.password"] ?? map["Password"]
        let password = try passwordNode.map { Secret(try $0.string()) }
        // "Authentication": "OAuth2ClientCredentials" with tokenServiceURL, clientId, clientSecret.
        var oauth2: OAuth2Settings?
        if try value("Authentication")?.lowercased() == "oauth2clientcredentials" {
            guard let tokenURL = try value("tokenServiceURL"), let clientID = try value("clientId"),
                  let secret = try map["clientSecret"].map({ Secret(try $0.string()) }) else {
                throw map.owner.error("an OAuth2ClientCredentials destination needs tokenServiceURL, clientId and clientSecret")
            }
            // A destination has no opt-in for clear text: an http tokenServiceURL is refused.
            let checkedURL = try SiteLoader.tokenURL(
                tokenURL, allowInsecure: false, node: map["tokenServiceURL"] ?? map.owner,
                remedy: "use an https tokenServiceURL (only a YAML site can allow http, with oauth2.allow_insecure_token_url: true)"
            )
            oauth2 = OAuth2Settings(tokenURL: checkedURL, clientID: clientID, clientSecret: secret, scope: try value("scope"))
        }

        var smtp: RemoteSite.SMTP?
        let transport = try value("mail.transport.protocol")?.lowercased() ?? "smtps"
        let smtpPrefix = transport == "smtp" ? "mail.smtp" : "mail.smtps"
        if let smtpHost = try value("\(smtpPrefix).host") {
            let smtpSecurity: RemoteSite.POP3.SecurityMode =
                transport == "smtp" ? (try map["mail.smtp.starttls.enable"]?.bool() == true ? .starttls : .none) : .tls
            smtp = RemoteSite.SMTP(
                host: smtpHost,
                port: try map["\(smtpPrefix).port"]?.int(in: 1...65535) ?? (smtpSecurity == .tls ? 465 : 587),
                security: smtpSecurity,
                from: try value("mail.smtp.from") ?? value("mail.from"),
                user: user,
                password: password
            )
        }

        return RemoteSite(
            name: name,
            description: try value("Description"),
            enabled: true,
            pop3: RemoteSite.POP3(
                host: host,
                port: try portNode?.int(in: 1...65535) ?? (security == .tls ? 995 : 110),
                security: security,
                user: user,
                password: password,
                auth: oauth2 == nil ? [] : [.xoauth2, .oauthbearer],
                allowPlaintextPassword: false,
                tls: RemoteSite.TLS(caFile: nil, clientCertificate: nil, clientKey: nil, verify: true),
                oauth2: oauth2,
                connectTimeout: .seconds(15),
                readTimeout: .seconds(60)
            ),
            poll: RemoteSite.Poll(interval: .seconds(300), deleteAfterRetrieve: true, maxMessageSize: 200 << 20),
            smtp: smtp,
            application: nil,
            applicationLine: nil,
            routes: [],
            sourceFile: map.owner.file
        )
    }
}
