"""Labeled fixtures for the PII detector: planted PII in realistic code, and look-alikes.

`POSITIVES` are snippets in many languages with PII planted by a seeded generator; each
`Sample.labels` entry is `(kind, value)` and every occurrence of `value` in the text is PII of
that kind. The snippets also carry look-alikes (versions, private addresses, example.com
mail, hashes), so a detector that over-fires loses precision here too. `NEGATIVES` are
snippets that hold no PII at all. Keys are synthesized in each provider's format from random
characters; none is a real credential.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from dataclasses import dataclass

EMAIL, IP, KEY, PASSWORD = "EMAIL", "IP_ADDRESS", "KEY", "PASSWORD"


@dataclass(frozen=True)
class Sample:
    name: str
    lang: str
    text: str
    labels: tuple[tuple[str, str], ...] = ()


_FIRST = """ana bruno chen dmitri elena farid greta hiro ines jonas kemal lucia mateo nadia omar
priya quentin rosa sven tomasz ulla viktor wen ximena yusuf zoe aleksander beatriz""".split()
_LAST = """silva novak wong petrov garcia haddad larsen tanaka moreau weber yilmaz rossi kowalski
okafor fischer nakamura dubois lindqvist horvath mendes ivanova brennan""".split()
_MAIL_DOMAINS = """gmail.com outlook.com yahoo.co.uk protonmail.ch fastmail.fm mail.ru web.de
gmx.net posteo.de icloud.com hey.com zoho.eu""".split()
_ORG_DOMAINS = """acme-corp.io brightwave.dev cs.stanford.edu uni-heidelberg.de northwind.com
lumen-labs.ai kestrel.tech polaris-systems.net fjord.no tecnologia.com.br inria.fr
rakuten.co.jp iitb.ac.in helix.cloud""".split()
_PUBLIC_V4_FIRST = [23, 31, 37, 45, 51, 62, 77, 81, 88, 91, 104, 109, 134, 138, 146, 151, 159]
_PUBLIC_V4_FIRST += [176, 178, 185, 188, 195, 212, 217]
_PUBLIC_V6_FIRST = """2a00 2a01 2a02 2a03 2a05 2604 2606 2607 2610 2800 2c0f 2400 2401 2403
2405 2600 2601 2602 2603 2a0e""".split()
_WORDS = """sunset harbor marble falcon copper willow ember quartz cobalt maple river tundra orchid
meadow lantern saffron glacier""".split()
_B62 = string.ascii_letters + string.digits
_PEM_HEADS = {
    "RSA PRIVATE KEY": "MIIEpAIBAAKCAQEA",
    "PRIVATE KEY": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ",
    "EC PRIVATE KEY": "MHcCAQEEI",
    "OPENSSH PRIVATE KEY": "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABlwAAAAdzc2gtcn",
}


class _Gen:
    """Seeded values in the right formats; `plant` records a value as a label of the sample."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.labels: list[tuple[str, str]] = []

    def plant(self, kind: str, value: str) -> str:
        self.labels.append((kind, value))
        return value

    def take(self, name: str, lang: str, text: str) -> Sample:
        labels, self.labels = tuple(self.labels), []
        for _, value in labels:
            assert value in text, (name, value)
        return Sample(name, lang, text, labels)

    def pick(self, seq):
        return self.r.choice(seq)

    def chars(self, n: int, alphabet: str = _B62) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    # -- people and machines ------------------------------------------------------------------

    def person(self) -> tuple[str, str]:
        return self.pick(_FIRST), self.pick(_LAST)

    def email(self, first: str | None = None, last: str | None = None) -> str:
        f, l_ = first or self.pick(_FIRST), last or self.pick(_LAST)
        local = self.pick(
            [f"{f}.{l_}", f"{f[0]}{l_}", f"{f}_{l_}", f"{f}", f"{f}+{self.pick(_WORDS)}"]
            + [f"{f}{self.r.randint(1, 99)}", f"{l_}.{f[0]}", f"{f}-{l_}"]
        )
        domain = self.pick(_MAIL_DOMAINS if self.r.random() < 0.5 else _ORG_DOMAINS)
        address = f"{local}@{domain}"
        return address.upper() if self.r.random() < 0.05 else address

    def ipv4(self) -> str:
        while True:
            octets = [self.pick(_PUBLIC_V4_FIRST)] + [self.r.randint(1, 254) for _ in range(3)]
            value = ".".join(map(str, octets))
            ip = ipaddress.ip_address(value)
            if ip.is_global and not ip.is_multicast and any(o >= 10 for o in octets):
                return value

    def ipv6(self) -> str:
        groups = [self.pick(_PUBLIC_V6_FIRST)] + [
            f"{self.r.randint(0, 0xFFFF):x}" for _ in range(7)
        ]
        if self.r.random() < 0.6:
            groups[3:6] = ["0", "0", "0"]
        ip = ipaddress.IPv6Address(":".join(groups))
        assert ip.is_global
        style = self.r.random()
        if style < 0.6:
            return ip.compressed
        if style < 0.8:
            return ip.compressed.upper()
        return ip.exploded

    # -- credentials --------------------------------------------------------------------------

    def password(self) -> str:
        style = self.r.random()
        if style < 0.4:
            word = self.pick(_WORDS)
            return f"{word.capitalize()}{self.r.randint(10, 9999)}{self.pick('!*+-=@^_')}"
        if style < 0.7:
            return self.chars(self.r.randint(10, 18), _B62 + "!*-_=+")
        return f"{self.pick(_WORDS)}-{self.pick(_WORDS)}-{self.r.randint(1, 99)}"

    def token(self, n: int) -> str:
        while True:
            value = self.chars(n)
            has = (any(c.isdigit() for c in value), any(c.isupper() for c in value))
            if all(has) and any(c.islower() for c in value):
                return value

    def hexkey(self, n: int) -> str:
        return self.chars(n, "0123456789abcdef")

    def aws_id(self) -> str:
        return self.pick(["AKIA", "ASIA"]) + self.chars(16, string.ascii_uppercase + "234567")

    def aws_secret(self) -> str:
        return self.token(38) + self.pick(["/", "+"]) + self.chars(1)

    def github(self) -> str:
        return self.pick(["ghp_", "gho_", "ghs_"]) + self.token(36)

    def gitlab(self) -> str:
        return "glpat-" + self.token(20)

    def slack(self) -> str:
        digits = string.digits
        return (
            f"xox{self.pick('bp')}-{self.chars(12, digits)}-{self.chars(13, digits)}-"
            f"{self.token(24)}"
        )

    def stripe(self) -> str:
        return self.pick(["sk_live_", "rk_live_"]) + self.token(24)

    def sendgrid(self) -> str:
        return f"SG.{self.token(22)}.{self.token(43)}"

    def google(self) -> str:
        return "AIza" + self.token(35)

    def npm(self) -> str:
        return "npm_" + self.token(36)

    def jwt(self) -> str:
        def part(obj) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        header = part({"alg": self.pick(["HS256", "RS256"]), "typ": "JWT"})
        payload = part(
            {
                "sub": str(self.r.randint(10**6, 10**9)),
                "iat": self.r.randint(1_600_000_000, 1_700_000_000),
            }
        )
        signature = base64.urlsafe_b64encode(self.r.randbytes(32)).decode().rstrip("=")
        return f"{header}.{payload}.{signature}"

    def pem_body(self, lines: int, kind: str = "PRIVATE KEY") -> str:
        # Real bodies open with a fixed DER or OpenSSH header (runs like AAAA included).
        head = _PEM_HEADS.get(kind, "")
        raw = head + base64.b64encode(self.r.randbytes(48 * lines)).decode()[len(head) :]
        return "\n".join(raw[i : i + 64] for i in range(0, len(raw), 64))

    def azure(self) -> str:
        return base64.b64encode(self.r.randbytes(64)).decode()

    def mailchimp(self) -> str:
        return f"{self.hexkey(32)}-us{self.r.randint(2, 21)}"

    # -- look-alikes --------------------------------------------------------------------------

    def version(self) -> str:
        return ".".join(str(self.r.randint(0, 30)) for _ in range(4))

    def private_ip(self) -> str:
        return self.pick(
            [
                f"10.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}",
                f"192.168.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}",
                f"172.{self.r.randint(16, 31)}.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}",
                "127.0.0.1",
                "0.0.0.0",
            ]
        )

    def uuid(self) -> str:
        h = self.hexkey(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


# Positive templates: each plants PII with `g.plant` and returns `g.take(...)`.


def _py_settings(g: _Gen) -> Sample:
    admin = g.plant(EMAIL, g.email())
    db_pw = g.plant(PASSWORD, g.password())
    secret = g.plant(KEY, g.token(50))
    host = g.plant(IP, g.ipv4())
    text = f'''"""Django settings for the billing service."""

import os

DEBUG = False
SECRET_KEY = "{secret}"
ALLOWED_HOSTS = ["billing.internal", "{host}", "localhost", "127.0.0.1"]
ADMINS = [("Ops", "{admin}")]
DEFAULT_FROM_EMAIL = "noreply@example.com"

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "billing",
        "USER": "billing_app",
        "PASSWORD": "{db_pw}",
        "HOST": "{g.private_ip()}",
        "PORT": "5432",
    }}
}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [{{"NAME": "MinimumLengthValidator"}}]
VERSION = "{g.version()}"
'''
    return g.take("py_settings", "python", text)


def _py_script(g: _Gen) -> Sample:
    first, last = g.person()
    author = g.plant(EMAIL, g.email(first, last))
    to = g.plant(EMAIL, g.email())
    smtp_pw = g.plant(PASSWORD, g.password())
    server = g.plant(IP, g.ipv4())
    text = f'''#!/usr/bin/env python3
# Author: {first.title()} {last.title()} <{author}>
"""Send the nightly report."""
import smtplib
from email.message import EmailMessage

__version__ = "{g.version()}"
SMTP_HOST = "{server}"
SMTP_USER = "reports"
SMTP_PASS = '{smtp_pw}'


def send(body: str) -> None:
    msg = EmailMessage()
    msg["From"] = "reports@example.org"
    msg["To"] = "{to}"
    msg.set_content(body)
    with smtplib.SMTP(SMTP_HOST, 587) as smtp:
        smtp.starttls()
        smtp.login(SMTP_USER, SMTP_PASS)
        smtp.send_message(msg)


if __name__ == "__main__":
    password = os.environ.get("SMTP_PASSWORD")
    send("ok")
'''
    return g.take("py_script", "python", text)


def _py_clients(g: _Gen) -> Sample:
    aws_id = g.plant(KEY, g.aws_id())
    aws_secret = g.plant(KEY, g.aws_secret())
    gh = g.plant(KEY, g.github())
    pg_pw = g.plant(PASSWORD, g.password().replace("@", "").replace("#", ""))
    text = f'''import boto3
import psycopg2
from github import Github

s3 = boto3.client(
    "s3",
    aws_access_key_id="{aws_id}",
    aws_secret_access_key="{aws_secret}",
    region_name="eu-west-1",
)
gh = Github("{gh}")
conn = psycopg2.connect(host="{g.private_ip()}", dbname="events", user="etl", password="{pg_pw}")
checksum = "{g.hexkey(64)}"  # sha256 of the export
request_id = "{g.uuid()}"
'''
    return g.take("py_clients", "python", text)


def _js_config(g: _Gen) -> Sample:
    stripe = g.plant(KEY, g.stripe())
    google = g.plant(KEY, g.google())
    mongo_pw = g.plant(PASSWORD, g.token(16))
    support = g.plant(EMAIL, g.email())
    text = f"""// config/production.js
module.exports = {{
  port: process.env.PORT || 8080,
  stripeSecretKey: '{stripe}',
  mapsApiKey: "{google}",
  mongoUrl: "mongodb+srv://app:{mongo_pw}@cluster0.abcde.mongodb.net/shop?retryWrites=true",
  supportEmail: '{support}',
  sessionSecret: process.env.SESSION_SECRET,
  version: '{g.version()}',
  uploadDir: '/var/lib/shop/uploads',
}};
"""
    return g.take("js_config", "javascript", text)


def _js_fetch(g: _Gen) -> Sample:
    jwt = g.plant(KEY, g.jwt())
    ip = g.plant(IP, g.ipv4())
    user = g.plant(EMAIL, g.email())
    text = f"""import axios from "axios";

const API = "http://{ip}:3000/api";
const client = axios.create({{
  baseURL: API,
  headers: {{ Authorization: "Bearer {jwt}" }},
}});

export async function invite() {{
  const res = await client.post("/invites", {{ email: "{user}", role: "viewer" }});
  console.log(`invited ${{res.data.id}}`, "@babel/core@7.22.5");
  return res.data;
}}
"""
    return g.take("js_fetch", "javascript", text)


def _package_json(g: _Gen) -> Sample:
    first, last = g.person()
    author = g.plant(EMAIL, g.email(first, last))
    contributor = g.plant(EMAIL, g.email())
    text = json.dumps(
        {
            "name": f"@{last}/{g.pick(_WORDS)}-utils",
            "version": "2.4.1",
            "author": f"{first.title()} {last.title()} <{author}> (https://{last}.dev)",
            "contributors": [{"name": "Sam", "email": contributor}],
            "bugs": {"email": "bugs@example.com"},
            "dependencies": {"lodash": "^4.17.21", "react": "18.2.0"},
        },
        indent=2,
    )
    return g.take("package_json", "json", text + "\n")


def _java_service(g: _Gen) -> Sample:
    first, last = g.person()
    author = g.plant(EMAIL, g.email(first, last))
    db_pw = g.plant(PASSWORD, g.password())
    ip = g.plant(IP, g.ipv4())
    key = g.plant(KEY, g.token(40))
    text = f"""package com.acme.billing;

import java.net.InetAddress;
import java.util.Properties;

/**
 * Connects the billing service to its database.
 *
 * @author {first.title()} {last.title()} &lt;{author}&gt;
 * @since {g.version()}
 */
public class BillingConfig {{
    private static final String DB_PASSWORD = "{db_pw}";
    private static final String API_KEY = "{key}";

    @Override
    public String toString() {{
        return "BillingConfig";
    }}

    public Properties props() throws Exception {{
        Properties props = new Properties();
        props.setProperty("user", "billing");
        props.setProperty("password", DB_PASSWORD);
        InetAddress gateway = InetAddress.getByName("{ip}");
        return props;
    }}
}}
"""
    return g.take("java_service", "java", text)


def _java_props(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("#", "").replace("!", ""))
    mail = g.plant(EMAIL, g.email())
    ip = g.plant(IP, g.ipv4())
    text = f"""# application.properties
server.port=8443
spring.datasource.url=jdbc:mysql://{g.private_ip()}:3306/orders
spring.datasource.username=orders
spring.datasource.password={pw}
spring.mail.host=smtp.example.com
spring.mail.username={mail}
management.server.address={ip}
app.version={g.version()}
"""
    return g.take("java_props", "properties", text)


def _go_main(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("`", ""))
    tok = g.plant(KEY, g.slack())
    ip6 = g.plant(IP, g.ipv6())
    mail = g.plant(EMAIL, g.email())
    text = f"""package main

import (
	"net"
	"os"
)

// Maintainer: {mail}
type Config struct {{
	Host     string
	Password string
}}

func main() {{
	cfg := Config{{
		Host:     "db.internal",
		Password: "{pw}",
	}}
	slackToken := "{tok}"
	addr := net.ParseIP("{ip6}")
	local := net.ParseIP("::1")
	_ = os.Setenv("APP_ENV", "prod")
	_, _, _, _ = cfg, slackToken, addr, local
}}
"""
    return g.take("go_main", "go", text)


def _docker_compose(g: _Gen) -> Sample:
    pg_pw = g.plant(PASSWORD, g.password().replace("#", "").replace("$", ""))
    redis_pw = g.plant(PASSWORD, g.token(20))
    ip = g.plant(IP, g.ipv4())
    mail = g.plant(EMAIL, g.email())
    text = f"""version: "3.9"
services:
  db:
    image: postgres:15.4
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: {pg_pw}
      PGDATA: /var/lib/postgresql/data
  cache:
    image: redis:7.2.1
    command: redis-server --requirepass {redis_pw} --appendonly yes
  proxy:
    image: traefik:2.10
    labels:
      - "traefik.http.middlewares.ip.ipwhitelist.sourcerange={ip}/32, 10.0.0.0/8"
      - "maintainer={mail}"
"""
    return g.take("docker_compose", "yaml", text)


def _k8s_and_ci(g: _Gen) -> Sample:
    key = g.plant(KEY, g.token(32))
    gl = g.plant(KEY, g.gitlab())
    notify = g.plant(EMAIL, g.email())
    text = f"""name: deploy
on:
  push:
    branches: [main]
env:
  NODE_VERSION: 18.17.1
  DATADOG_API_KEY: {key}
  GITLAB_TOKEN: "{gl}"
jobs:
  deploy:
    runs-on: ubuntu-22.04
    steps:
      - uses: actions/checkout@v4
      - run: ./deploy.sh --notify {notify}
      - run: echo "token=${{{{ secrets.DEPLOY_TOKEN }}}}"
"""
    return g.take("k8s_and_ci", "yaml", text)


def _shell_deploy(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.token(14))
    host = g.plant(IP, g.ipv4())
    mail = g.plant(EMAIL, g.email())
    pg = g.plant(PASSWORD, g.password().replace("'", "").replace("!", ""))
    text = f"""#!/usr/bin/env bash
set -euo pipefail
# deploy.sh v{g.version()}
HOST={host}
export PGPASSWORD='{pg}'
git config --global user.email "{mail}"
mysqldump -u backup --password={pw} orders > /tmp/orders.sql
scp /tmp/orders.sql deploy@{host}:/srv/backups/
ssh -o StrictHostKeyChecking=no git@github.com:acme/ops.git || true
curl -s http://169.254.169.254/latest/meta-data/instance-id
"""
    return g.take("shell_deploy", "shell", text)


def _dotenv(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("#", "").replace(" ", ""))
    sg = g.plant(KEY, g.sendgrid())
    tw = g.plant(KEY, g.hexkey(32))
    mail = g.plant(EMAIL, g.email())
    text = f"""# .env.production
APP_ENV=production
APP_URL=https://shop.acme-corp.io
DB_HOST={g.private_ip()}
DB_PASSWORD={pw}
SENDGRID_API_KEY={sg}
TWILIO_AUTH_TOKEN={tw}
MAIL_FROM_ADDRESS={mail}
SENTRY_RELEASE={g.version()}
"""
    return g.take("dotenv", "dotenv", text)


def _c_header(g: _Gen) -> Sample:
    first, last = g.person()
    mail = g.plant(EMAIL, g.email(first, last))
    ip = g.plant(IP, g.ipv4())
    pw = g.plant(PASSWORD, g.password().replace('"', "").replace("\\", ""))
    text = f"""/*
 * telemetry.h -- uplink settings
 * Copyright (c) 2021 {first.title()} {last.title()} <{mail}>
 */
#ifndef TELEMETRY_H
#define TELEMETRY_H

#include <stdint.h>

#define FW_VERSION "{g.version()}"
#define UPLINK_HOST "{ip}"
#define UPLINK_PORT 4840
#define UPLINK_PASSWORD "{pw}"

static const char *mac = "00:1A:2B:3C:4D:5E";
int uplink_connect(const char *host, uint16_t port);

#endif
"""
    return g.take("c_header", "c", text)


def _c_source(g: _Gen) -> Sample:
    ip = g.plant(IP, g.ipv4())
    ip6 = g.plant(IP, g.ipv6())
    text = f"""#include <arpa/inet.h>
#include <stdio.h>

int main(void) {{
    struct in_addr a4;
    struct in6_addr a6;
    inet_pton(AF_INET, "{ip}", &a4);
    inet_pton(AF_INET6, "{ip6}", &a6);
    inet_pton(AF_INET, "{g.private_ip()}", &a4);
    printf("%s built at 12:30:45\\n", "{g.version()}");
    return 0;
}}
"""
    return g.take("c_source", "c", text)


def _json_config(g: _Gen) -> Sample:
    mail = g.plant(EMAIL, g.email())
    ip = g.plant(IP, g.ipv4())
    pw = g.plant(PASSWORD, g.password())
    tok = g.plant(KEY, g.token(40))
    text = json.dumps(
        {
            "service": "ingest",
            "version": g.version(),
            "owner": mail,
            "listen": "0.0.0.0:9000",
            "upstream": {"host": ip, "port": 443},
            "database": {"user": "ingest", "password": pw},
            "auth": {"token": tok, "token_type": "Bearer"},
            "request_id": g.uuid(),
        },
        indent=4,
    )
    return g.take("json_config", "json", text + "\n")


def _sql(g: _Gen) -> Sample:
    users = [g.plant(EMAIL, g.email()) for _ in range(3)]
    pw = g.plant(PASSWORD, g.password().replace("'", ""))
    pw2 = g.plant(PASSWORD, g.token(12))
    ip = g.plant(IP, g.ipv4())
    rows = ",\n".join(
        f"  ({i + 1}, '{u.split('@')[0]}', '{u}', '{g.uuid()}')" for i, u in enumerate(users)
    )
    text = f"""-- seed.sql
CREATE USER 'reporting'@'%' IDENTIFIED BY '{pw}';
ALTER USER analytics WITH PASSWORD '{pw2}';
INSERT INTO users (id, handle, email, external_id) VALUES
{rows};
INSERT INTO audit_log (ip, action) VALUES ('{ip}', 'login'), ('127.0.0.1', 'healthcheck');
"""
    return g.take("sql", "sql", text)


def _php(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("'", "").replace("$", ""))
    mail = g.plant(EMAIL, g.email())
    salt = g.plant(KEY, g.token(64).replace("'", ""))
    text = f"""<?php
/** wp-config.php */
define('DB_NAME', 'wordpress');
define('DB_USER', 'wp');
define('DB_PASSWORD', '{pw}');
define('DB_HOST', 'localhost');
define('AUTH_KEY', '{salt}');
$admin_email = "{mail}";
$password = $_POST['password'];
"""
    return g.take("php", "php", text)


def _nginx(g: _Gen) -> Sample:
    ips = [g.plant(IP, g.ipv4()) for _ in range(2)]
    ip6 = g.plant(IP, g.ipv6())
    text = f"""# /etc/nginx/conf.d/app.conf
upstream app {{
    server {ips[0]}:8080 max_fails=3;
    server {g.private_ip()}:8080 backup;
}}
server {{
    listen 443 ssl;
    listen [{ip6}]:443 ssl;
    set_real_ip_from {ips[1]};
    allow 10.0.0.0/8;
    deny all;
}}
"""
    return g.take("nginx", "nginx", text)


def _access_log(g: _Gen) -> Sample:
    ips = [g.plant(IP, g.ipv4()) for _ in range(2)]
    ip6 = g.plant(IP, g.ipv6())
    text = f"""LOG_LINES = [
    '{ips[0]} - - [10/Oct/2023:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326',
    '{ip6} - - [10/Oct/2023:13:55:37 +0000] "POST /login HTTP/1.1" 302 0',
    '{ips[1]} - - [10/Oct/2023:13:56:02 +0000] "GET /health HTTP/1.1" 200 2',
    '127.0.0.1 - - [10/Oct/2023:13:56:05 +0000] "GET /metrics HTTP/1.1" 200 512',
]
"""
    return g.take("access_log", "python", text)


def _private_key(g: _Gen) -> Sample:
    kind = g.pick(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = g.plant(KEY, g.pem_body(g.r.randint(8, 14), kind))
    # A second key written as adjacent string literals, one line each.
    lines = g.pem_body(5, "RSA PRIVATE KEY").split("\n")
    split = g.plant(KEY, '\\n"\n    "'.join(lines))
    text = f'''TEST_KEY = """-----BEGIN {kind}-----
{body}
-----END {kind}-----
"""
CLIENT_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\\n"
    "{split}\\n"
    "-----END RSA PRIVATE KEY-----\\n"
)


def load_key(pem: str) -> bytes:
    if not pem.startswith("-----BEGIN {kind}-----"):
        raise ValueError("not a PEM key")
    return pem.encode()
'''
    return g.take("private_key", "python", text)


def _json_escaped_key(g: _Gen) -> Sample:
    body = g.pem_body(6)
    escaped = body.replace("\n", "\\n")
    g.plant(KEY, escaped)
    mail = g.plant(EMAIL, g.email())
    text = json.dumps(
        {
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": g.hexkey(40),
            "client_email": mail,
        },
        indent=2,
    )
    text = text[:-2] + (
        f',\n  "private_key": "-----BEGIN PRIVATE KEY-----\\n{escaped}\\n'
        '-----END PRIVATE KEY-----\\n"\n}\n'
    )
    return g.take("json_escaped_key", "json", text)


def _terraform(g: _Gen) -> Sample:
    aws_id = g.plant(KEY, g.aws_id())
    secret = g.plant(KEY, g.aws_secret())
    ip = g.plant(IP, g.ipv4())
    pw = g.plant(PASSWORD, g.password().replace('"', ""))
    text = f"""provider "aws" {{
  region     = "us-east-1"
  access_key = "{aws_id}"
  secret_key = "{secret}"
}}

resource "aws_security_group_rule" "office" {{
  type        = "ingress"
  cidr_blocks = ["{ip}/32", "10.20.0.0/16"]
}}

resource "aws_db_instance" "main" {{
  engine_version = "14.7"
  username       = "admin"
  password       = "{pw}"
}}
"""
    return g.take("terraform", "terraform", text)


def _ruby(g: _Gen) -> Sample:
    first, last = g.person()
    mail = g.plant(EMAIL, g.email(first, last))
    npm = g.plant(KEY, g.npm())
    mc = g.plant(KEY, g.mailchimp())
    text = f"""Gem::Specification.new do |spec|
  spec.name    = "{g.pick(_WORDS)}"
  spec.version = "{g.version()}"
  spec.authors = ["{first.title()} {last.title()}"]
  spec.email   = ["{mail}"]
end

NPMRC = "//registry.npmjs.org/:_authToken={npm}"
Gibbon::Request.api_key = "{mc}"
"""
    return g.take("ruby", "ruby", text)


def _xml(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("<", "").replace("&", ""))
    mail = g.plant(EMAIL, g.email())
    text = f"""<settings>
  <servers>
    <server>
      <id>releases</id>
      <username>deployer</username>
      <password>{pw}</password>
    </server>
  </servers>
  <profiles>
    <profile>
      <properties>
        <maintainer.email>{mail}</maintainer.email>
        <plugin.version>{g.version()}</plugin.version>
      </properties>
    </profile>
  </profiles>
</settings>
"""
    return g.take("xml", "xml", text)


def _ini(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace(";", "").replace("#", "") + "7")
    ip = g.plant(IP, g.ipv4())
    mail = g.plant(EMAIL, g.email())
    text = f"""; odbc.ini
[reporting]
Driver      = PostgreSQL Unicode
Servername  = {ip}
Port        = 5432
Username    = reporter
password = {pw}
Contact     = {mail}
"""
    return g.take("ini", "ini", text)


def _csharp(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.token(15))
    mail = g.plant(EMAIL, g.email())
    text = f"""using System.Data.SqlClient;

public static class Db
{{
    // Ask {mail} before changing this.
    private const string Conn =
        "Server=tcp:{g.private_ip()},1433;Database=orders;User Id=sa;Password={pw};Encrypt=True;";

    public static SqlConnection Open() => new SqlConnection(Conn);
}}
"""
    return g.take("csharp", "csharp", text)


def _dockerfile(g: _Gen) -> Sample:
    mail = g.plant(EMAIL, g.email())
    tok = g.plant(KEY, g.github())
    pw = g.plant(PASSWORD, g.token(12))
    text = f"""FROM python:3.11.4-slim
LABEL maintainer="{mail}"
ARG PIP_INDEX_TOKEN
ENV GITHUB_TOKEN={tok}
ENV DB_PASSWORD={pw}
RUN pip install --no-cache-dir requests==2.31.0
EXPOSE 8000
"""
    return g.take("dockerfile", "dockerfile", text)


def _html(g: _Gen) -> Sample:
    mail = g.plant(EMAIL, g.email())
    mail2 = g.plant(EMAIL, g.email())
    text = f"""<footer class="site-footer">
  <img src="/img/logo@2x.png" alt="logo">
  <p>Questions? Write to <a href="mailto:{mail}">{mail}</a>
     or our DPO at {mail2}.</p>
  <style>@media (max-width: 600px) {{ .site-footer {{ font-size: 12px; }} }}</style>
</footer>
"""
    return g.take("html", "html", text)


def _authors(g: _Gen) -> Sample:
    lines = []
    for _ in range(4):
        first, last = g.person()
        lines.append(f"{first.title()} {last.title()} <{g.plant(EMAIL, g.email(first, last))}>")
    text = "# AUTHORS\n# Sorted alphabetically.\n" + "\n".join(lines) + "\n"
    return g.take("authors", "text", text)


def _python_secrets_misc(g: _Gen) -> Sample:
    hex_secret = g.plant(KEY, g.hexkey(40))
    bearer = g.plant(KEY, g.token(48))
    client_secret = g.plant(KEY, g.token(34).replace("_", ""))
    text = f'''CLIENT_ID = "{g.pick(_WORDS)}-web"
CLIENT_SECRET = "{client_secret}"
WEBHOOK_SECRET: str = "{hex_secret}"
HEADERS = {{"Authorization": "Bearer {bearer}", "Accept": "application/json"}}
CACHE_KEY = "user_profile_settings_v2"
API_VERSION = "2023-10-01"
GIT_COMMIT = "{g.hexkey(40)}"
'''
    return g.take("python_secrets_misc", "python", text)


def _yaml_app(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.password().replace("#", "").replace('"', "").replace("'", ""))
    mail = g.plant(EMAIL, g.email())
    ip6 = g.plant(IP, g.ipv6())
    key = g.plant(KEY, g.token(36))
    text = f"""# app.yaml
app:
  name: ledger
  version: {g.version()}
  admins:
    - {mail}
    - ops@example.com
database:
  host: db.internal
  username: ledger
  password: "{pw}"
  pool: 10
api_key: {key}
dns:
  - {ip6}
  - fd00::53
"""
    return g.take("yaml_app", "yaml", text)


def _git_patch(g: _Gen) -> Sample:
    people = [g.person() for _ in range(3)]
    mails = [g.plant(EMAIL, g.email(f, l_)) for f, l_ in people]
    names = [f"{f.title()} {l_.title()}" for f, l_ in people]
    text = f"""From 3f2a9c1e0b7d4a6f8e2c5b1a9d7f3e6c4b2a1d0e Mon Sep 17 00:00:00 2001
From: {names[0]} <{mails[0]}>
Date: Tue, 10 Oct 2023 13:55:36 +0200
Subject: [PATCH v2 1/3] net: fix refcount leak in tcp_close()

Reported-by: {names[1]} <{mails[1]}>
Signed-off-by: {names[0]} <{mails[0]}>
Co-authored-by: {names[2]} <{mails[2]}>
Cc: stable@vger.kernel.org # 5.15.x
---
 net/ipv4/tcp.c | 2 +-
"""
    g.plant(EMAIL, "stable@vger.kernel.org")
    return g.take("git_patch", "patch", text)


def _rust(g: _Gen) -> Sample:
    tok = g.plant(KEY, g.token(40))
    ip = g.plant(IP, g.ipv4())
    mail = g.plant(EMAIL, g.email())
    text = f"""//! Uplink client. Contact: {mail}
use std::net::IpAddr;

const API_TOKEN: &str = "{tok}";
const USER_AGENT: &str = "uplink/{g.version()}";

fn upstream() -> Result<IpAddr, std::net::AddrParseError> {{
    let addr: IpAddr = "{ip}".parse()?;
    let local: IpAddr = "::1".parse()?;
    Ok(if cfg!(test) {{ local }} else {{ addr }})
}}
"""
    return g.take("rust", "rust", text)


def _kotlin_swift(g: _Gen) -> Sample:
    k1 = g.plant(KEY, g.token(32))
    k2 = g.plant(KEY, g.token(28))
    mail = g.plant(EMAIL, g.email())
    text = f"""// Kotlin
object Keys {{
    const val apiKey = "{k1}"
    val supportEmail = "{mail}"
}}

// Swift
struct Secrets {{
    static let clientSecret = "{k2}"
    static let appVersion = "{g.version()}"
}}
"""
    return g.take("kotlin_swift", "kotlin", text)


def _ops_commands(g: _Gen) -> Sample:
    netrc_pw = g.plant(PASSWORD, g.token(14))
    root_pw = g.plant(PASSWORD, g.token(16))
    ip = g.plant(IP, g.ipv4())
    text = f"""# ~/.netrc
machine api.acme-corp.io login deploy password {netrc_pw}

# bring up a scratch database
docker run -d --name scratch -e MYSQL_ROOT_PASSWORD={root_pw} -p 3306:3306 mysql:8.0.34
ping -c 3 {ip}
traceroute -n {g.private_ip()}
"""
    return g.take("ops_commands", "shell", text)


def _http_auth_calls(g: _Gen) -> Sample:
    # Passwords passed positionally: no name on the line says "password".
    pw1 = g.plant(PASSWORD, g.token(13))
    pw2 = g.plant(PASSWORD, g.token(11))
    mail = g.plant(EMAIL, g.email())
    text = f"""import requests
import smtplib

resp = requests.get("https://ci.acme-corp.io/api/json", auth=("deploy", "{pw1}"))
with smtplib.SMTP_SSL("smtp.gmail.com", 465) as s:
    s.login("{mail}", "{pw2}")
"""
    return g.take("http_auth_calls", "python", text)


def _cloud_strings(g: _Gen) -> Sample:
    azure = g.plant(KEY, g.azure())
    team = f"T{g.chars(10, string.ascii_uppercase + string.digits)}"
    bot = f"B{g.chars(10, string.ascii_uppercase + string.digits)}"
    url = g.plant(KEY, f"https://hooks.slack.com/services/{team}/{bot}/{g.token(24)}")
    tg = g.plant(KEY, f"{g.r.randint(10**8, 10**9 - 1)}:AA{g.token(33)}")
    text = f"""AZURE_STORAGE = (
    "DefaultEndpointsProtocol=https;AccountName=acmeprod;"
    "AccountKey={azure};EndpointSuffix=core.windows.net"
)
SLACK_WEBHOOK = "{url}"
TELEGRAM_BOT = "{tg}"
"""
    return g.take("cloud_strings", "python", text)


def _aws_credentials(g: _Gen) -> Sample:
    ids = [g.plant(KEY, g.aws_id()) for _ in range(2)]
    secrets = [g.plant(KEY, g.aws_secret()) for _ in range(2)]
    text = f"""# ~/.aws/credentials
[default]
aws_access_key_id = {ids[0]}
aws_secret_access_key = {secrets[0]}
region = eu-central-1

[ci]
aws_access_key_id={ids[1]}
aws_secret_access_key={secrets[1]}
"""
    return g.take("aws_credentials", "ini", text)


def _nodemailer(g: _Gen) -> Sample:
    user = g.plant(EMAIL, g.email())
    pw = g.plant(PASSWORD, g.token(16))
    jdbc_pw = g.plant(PASSWORD, g.token(12))
    text = f"""const transporter = nodemailer.createTransport({{
  host: "smtp.gmail.com",
  port: 465,
  secure: true,
  auth: {{ user: "{user}", pass: "{pw}" }},
}});
const JDBC = "jdbc:postgresql://db.internal:5432/app?user=app&password={jdbc_pw}&ssl=true";
"""
    return g.take("nodemailer", "javascript", text)


def _hosts_file(g: _Gen) -> Sample:
    ips = [g.plant(IP, g.ipv4()) for _ in range(3)]
    ip6 = g.plant(IP, g.ipv6())
    text = f"""# /etc/hosts
127.0.0.1       localhost
::1             localhost ip6-localhost ip6-loopback
{ips[0]}    build-01.acme-corp.io build-01
{ips[1]}    build-02.acme-corp.io
{ips[2]}\tvpn.acme-corp.io
{ip6} vpn6.acme-corp.io
192.168.10.4    nas.lan
"""
    return g.take("hosts_file", "hosts", text)


def _go_table_test(g: _Gen) -> Sample:
    ips = [g.plant(IP, g.ipv4()) for _ in range(2)]
    text = f"""func TestIsAllowed(t *testing.T) {{
	cases := []struct {{
		addr string
		want bool
	}}{{
		{{"{ips[0]}", true}},
		{{"{ips[1]}", false}},
		{{"10.0.0.1", false}},
		{{"{g.version()}", false}}, // a version string must not parse
	}}
	for _, c := range cases {{
		if got := isAllowed(c.addr); got != c.want {{
			t.Errorf("isAllowed(%q) = %v", c.addr, got)
		}}
	}}
}}
"""
    return g.take("go_table_test", "go", text)


def _json_logs(g: _Gen) -> Sample:
    lines = []
    for i in range(3):
        ip = g.plant(IP, g.ipv4() if i != 1 else g.ipv6())
        mail = g.plant(EMAIL, g.email())
        record = {
            "ts": f"2023-10-05T12:0{i}:45.120Z",
            "level": "info",
            "client_ip": ip,
            "user": mail,
            "trace_id": g.hexkey(32),
            "app_version": g.version(),
        }
        lines.append(json.dumps(record))
    return g.take("json_logs", "jsonl", "\n".join(lines) + "\n")


def _csv_export(g: _Gen) -> Sample:
    rows = []
    for i in range(4):
        first, last = g.person()
        # Generic TLDs beyond the common ones, as found in real exports.
        tld = g.pick(["photography", "studio", "recipes", "consulting", "berlin", "xyz", "me"])
        host = f"{last}-{g.pick(_WORDS)}" if i % 2 else g.pick(_WORDS)
        mail = g.plant(EMAIL, f"{first}.{last}@{host}.{tld}")
        rows.append(f"{i + 1},{first.title()},{last.title()},{mail},{g.r.randint(18, 80)}")
    text = "id,first_name,last_name,email,age\n" + "\n".join(rows) + "\n"
    return g.take("csv_export", "csv", text)


def _shell_inline_env(g: _Gen) -> Sample:
    pg = g.plant(PASSWORD, g.token(12))
    vault = g.plant(KEY, "hvs." + g.token(24))
    key = g.plant(KEY, g.hexkey(64))
    text = f"""#!/bin/sh
PGPASSWORD={pg} psql -h db.internal -U postgres -c 'select 1'
VAULT_TOKEN={vault}
JWT_SECRET={key}
echo "$VAULT_TOKEN" | vault login -
"""
    return g.take("shell_inline_env", "shell", text)


def _spring_yaml(g: _Gen) -> Sample:
    pw = g.plant(PASSWORD, g.token(14))
    become = g.plant(PASSWORD, g.token(10))
    ip = g.plant(IP, g.ipv4())
    text = f"""spring:
  datasource:
    url: jdbc:postgresql://{ip}:5432/inventory
    username: inventory
    password: {pw}
---
# ansible inventory vars
ansible_user: deploy
ansible_become_password: {become}
ansible_python_interpreter: /usr/bin/python3
"""
    return g.take("spring_yaml", "yaml", text)


def _headers_and_objects(g: _Gen) -> Sample:
    k1 = g.plant(KEY, g.token(32))
    k2 = g.plant(KEY, base64.b64encode(g.r.randbytes(32)).decode())
    k3 = g.plant(KEY, g.token(40))
    text = f"""const headers = {{
  "x-api-key": "{k1}",
  "Content-Type": "application/json",
}};
const SECRET_KEY_BASE = "{k2}";
// a provider keyed by its name, not by "key": realistic but hard to see
const providers = {{ stripe: "{k3}", region: "eu" }};
"""
    return g.take("headers_and_objects", "javascript", text)


_TEMPLATES = (
    _py_settings,
    _py_script,
    _py_clients,
    _js_config,
    _js_fetch,
    _package_json,
    _java_service,
    _java_props,
    _go_main,
    _docker_compose,
    _k8s_and_ci,
    _shell_deploy,
    _dotenv,
    _c_header,
    _c_source,
    _json_config,
    _sql,
    _php,
    _nginx,
    _access_log,
    _private_key,
    _json_escaped_key,
    _terraform,
    _ruby,
    _xml,
    _ini,
    _csharp,
    _dockerfile,
    _html,
    _authors,
    _python_secrets_misc,
    _yaml_app,
    _git_patch,
    _rust,
    _kotlin_swift,
    _ops_commands,
    _http_auth_calls,
    _cloud_strings,
    _aws_credentials,
    _nodemailer,
    _hosts_file,
    _go_table_test,
    _json_logs,
    _csv_export,
    _shell_inline_env,
    _spring_yaml,
    _headers_and_objects,
)


def _build_positives(seed: int = 20240611, rounds: int = 3) -> tuple[Sample, ...]:
    g = _Gen(seed)
    return tuple(template(g) for _ in range(rounds) for template in _TEMPLATES)


POSITIVES = _build_positives()


# Look-alikes: none of these holds PII.

_NEGATIVE_SNIPPETS = (
    # versions and dotted numbers
    ("version", 'version = "1.2.3.4"'),
    ("dunder_version", "__version__ = '2.10.33.1'"),
    ("yaml_version", "Version: 4.1.12.31"),
    ("maven_version", "<version>3.2.11.40</version>"),
    ("pip_pin", "pip install requests==2.31.10.1"),
    ("npm_range", '"dependencies": {"left-pad": "^14.17.21.2"}'),
    ("git_tag", "git checkout v12.22.33.44"),
    ("release", "Release 10.4.12.33 fixes the login bug."),
    ("oid", 'OID_EKU = "1.3.6.1.5.5.7.3.1"'),
    ("snmp", "sysObjectID = 1.3.6.1.4.1.8072.3.2.10"),
    ("long_dotted", "coords = 51.50.73.12.91"),
    ("build", "build 17.134.22.95 (nightly)"),
    ("windows_build", 'ver = "10.0.19045.3570"'),
    ("section", "See section 14.9.3.12 of the spec."),
    ("rfc", "Per RFC 7230 3.2.6.14 tokens are case-insensitive."),
    ("semver_suffix", "TAG=22.11.14.99-beta"),
    ("all_single_digit", "server = 1.2.3.4  # dummy"),
    ("network_address", "route add 81.12.40.0 mask 255.255.255.0"),
    ("broadcast", "broadcast 77.12.44.255"),
    ("octet_overflow", 'addr = "300.12.45.67"'),
    # non-personal addresses
    ("private_10", 'DB_HOST = "10.12.0.7"'),
    ("private_192", "gateway 192.168.1.254"),
    ("private_172", "- 172.20.14.3"),
    ("loopback", 'bind = "127.0.0.1:8000"'),
    ("unspecified", "app.run(host='0.0.0.0', port=5000)"),
    ("link_local", "curl http://169.254.169.254/latest/meta-data/"),
    ("cgnat", "peer 100.64.12.9"),
    ("multicast", "mdns_group = '224.0.0.251'"),
    ("netmask", "netmask 255.255.240.0"),
    ("doc_v4", "example_ip = '203.0.113.50'"),
    ("doc_v4_b", "TEST_NET_2 = '198.51.100.14'"),
    ("public_dns", 'nameservers = ["8.8.8.8", "1.1.1.1", "9.9.9.9"]'),
    ("v6_loopback", 'listen = "[::1]:8080"'),
    ("v6_link_local", "fe80::1ff:fe23:4567:890a%eth0"),
    ("v6_ula", "ULA = 'fd12:3456:789a:1::1'"),
    ("v6_doc", "addr = ipaddress.ip_address('2001:db8::8a2e:370:7334')"),
    ("v6_doc_3fff", "ROUTE = '3fff:abc::1'"),
    ("v6_mapped", "::ffff:10.1.2.3"),
    # colon look-alikes
    ("cpp_std", "std::vector<std::string> names; std::map<int, int> m;"),
    ("cpp_nested", "boost::asio::ip::tcp::socket sock(io);"),
    ("cpp_hexy", "auto x = Face::add(bad::cafe, dead::beef);"),
    ("ruby_const", "Foo::Bar::Baz.new"),
    ("time", 'started_at = "12:30:45"'),
    ("iso_time", "2023-10-05T23:59:59.999Z"),
    ("mac", "hwaddr 00:1A:2B:3C:4D:5E"),
    ("mac_lower", "ether de:ad:be:ef:00:01"),
    ("hexdump", "0000: 2f3a 2001 0db8 4865 6c6c 6f20"),
    ("slice", "evens = data[2000::3]"),
    ("slice_b", "tail = samples[3000::]"),
    ("ratio", "aspect = '16:9'; clock = '23:59'"),
    # email look-alikes
    ("example_com", 'DEFAULT_FROM = "noreply@example.com"'),
    ("example_org", "contact: someone@example.org"),
    ("example_sub", "alice@mail.example.net"),
    ("invalid_tld", "user.email=test@example.invalid"),
    ("test_tld", "admin@portal.test"),
    ("localhost", "root@localhost"),
    ("local_tld", "printer@office.local"),
    ("your_domain", "you@yourdomain.com"),
    ("retina", '<img src="icon@2x.png"> <img src="hero@3x.webp">'),
    ("decorator", "@property\ndef name(self):\n    return self._name"),
    ("java_annotation", "@Override\npublic int hashCode() { return 1; }"),
    ("css_media", "@media screen and (max-width: 600px) { body { margin: 0; } }"),
    ("npm_version", "npm install lodash@4.17.21 react@latest"),
    ("scoped_pkg", 'import x from "@babel/core";'),
    ("scp_remote", "git clone git@github.com:acme/widgets.git"),
    ("ssh_url", "git clone ssh://git@gitlab.com/acme/widgets.git"),
    ("matmul", "y = x@self.weight + self.bias"),
    ("matmul_b", "z = A@B.T"),
    ("docker_digest", "FROM python@sha256:" + "ab12" * 16),
    ("perl_array", "my @files = glob('*.txt');"),
    ("no_tld", "ssh deploy@buildhost"),
    # hashes, ids, placeholders
    ("git_sha", 'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"'),
    ("sha256", "sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'"),
    ("md5", "md5sum: 0cc175b9c0f1b6a831c399e269772661"),
    ("etag", 'etag = "33a64df551425fcc55e4d42a148795d9"'),
    ("integrity", '"integrity": "sha512-9Vh1Vv7yz0aZsgP3GN7lqLfrC5ypbYB7D0sLU8EFh7Vq3iXb6X0nTgvp"'),
    ("digest", "digest: sha256:6a1f7d2c4b8e9f0a3d5c7b9e1f2a4c6d8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f"),
    ("uuid_token", 'token = "550e8400-e29b-41d4-a716-446655440000"'),
    ("uuid_key", "api_key: 123e4567-e89b-42d3-a456-426614174000"),
    ("aws_example_id", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"),
    ("aws_example_secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("your_key", 'API_KEY = "your_api_key_here"'),
    ("xxx", 'token = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"'),
    ("env_ref", 'api_key: "${API_KEY}"'),
    ("angle", 'auth_token = "<YOUR_AUTH_TOKEN>"'),
    ("stripe_test", "STRIPE_SECRET_KEY = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'"),
    ("dummy", 'auth_token = "dummy-token-for-tests-0001"'),
    ("fake", 'secret = "fake_secret_9f8e7d6c5b4a3210"'),
    ("replace_me", "apiKey: 'REPLACE_ME_WITH_REAL_KEY_123'"),
    ("zeros", 'key = "00000000000000000000000000000000"'),
    ("sequence", 'token = "abcdefghijklmnopqrstuvwxyz123456"'),
    ("changeme_key", "SECRET_KEY=changeme"),
    ("jinja", "api_token: {{ vault_api_token }}"),
    # key-named values that are not keys
    ("sort_key", 'sort_key = "created_at_timestamp_desc"'),
    ("endpoint", 'API_ENDPOINT = "https://api.acme-corp.io/v2/resources"'),
    ("auth_url", 'auth_url = "/oauth2/v2.0/authorize"'),
    ("token_type", 'token_type = "Bearer"'),
    ("api_version", 'API_VERSION = "2023-10-01"'),
    ("cache_key", 'cache_key = "user_profile_settings_v2"'),
    ("primary_key", 'primary_key = "customer_order_id"'),
    ("tokenizer", 'tokenizer_name = "bert-base-multilingual-uncased"'),
    ("author", '__author__ = "Ada Lovelace and Charles Babbage"'),
    ("keymap", 'keymap = "ctrl+shift+alt+meta+super+hyper"'),
    ("class_path", 'auth_backend = "django.contrib.auth.backends.ModelBackend"'),
    # password look-alikes
    ("pw_call", "password = get_password()"),
    ("pw_kwarg_same", "conn = connect(user=user, password=password)"),
    ("pw_environ", 'password = os.environ["DB_PASSWORD"]'),
    ("pw_getenv", 'DB_PASSWORD = os.getenv("DB_PASSWORD")'),
    ("pw_none", "password = None"),
    ("pw_empty", 'password = ""'),
    ("pw_stars", '"password": "***"'),
    ("pw_angle", "password: '<password>'"),
    ("pw_env_ref", "DB_PASSWORD=${DB_PASSWORD}"),
    ("pw_changeme", 'password = "changeme"'),
    ("pw_getpass", 'pwd = getpass.getpass("Password: ")'),
    ("pw_input", 'password = input("Enter password: ")'),
    ("pw_hash", "password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())"),
    ("pw_min_len", "PASSWORD_MIN_LENGTH = 12"),
    ("pw_field", 'password_field = "#login-password"'),
    ("pw_if", "if not password:\n    raise ValueError('password required')"),
    ("pw_signature", "def check_password(password: str) -> bool:"),
    ("pw_annotation", "class Login(BaseModel):\n    username: str\n    password: str"),
    ("pw_file_flag", "--password-file /run/secrets/db_password"),
    ("pw_pwd_module", "entry = pwd.getpwnam(user)"),
    ("pw_bypass", 'bypass = "maintenance-window"'),
    ("pw_compass", 'compass = "north-north-west"'),
    ("pw_pass_stmt", "class Empty:\n    pass"),
    ("pw_attr", "password = self.password"),
    ("pw_settings", "PASSWORD = settings.DB_PASSWORD"),
    ("pw_jinja", "password: {{ vault_db_password }}"),
    ("pw_format", 'password = "%s" % secret_value'),
    ("pw_null", '"password": null'),
    ("pw_process_env", "password: process.env.DB_PASSWORD,"),
    ("pw_perl_env", "password => $ENV{DB_PASS},"),
    ("pw_prompt_label", 'label = "Password:"'),
    ("pw_docstring", '"""\n    password: The password to authenticate with.\n"""'),
    ("pw_mgr", "password_mgr = HTTPPasswordMgrWithDefaultRealm()"),
    ("pw_tuple_args", "pbkdf2_hmac('sha256', b'password', b'salt', 100000)"),
    ("pw_pwd_path", "PWD=/home/runner/work"),
    ("pw_vault_tag", "password: !vault |"),
    ("pw_placeholder_url", "postgres://user:${DB_PASS}@db:5432/app"),
    ("pw_placeholder_url_b", "amqp://admin:<password>@rabbit:5672/"),
    # harder look-alikes
    ("long_camel", 'authProvider = "GoogleOAuth2AuthenticationProvider"'),
    ("header_name", 'apiKeyHeader = "X-Goog-Api-Key-Header-Name"'),
    (
        "base64_png",
        'api_logo = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ'
        'AAAABJRU5ErkJggg=="',
    ),
    ("ssh_public", "ssh_pub_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5"),
    ("pem_public", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END"),
    ("lfs_pointer", "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"),
    ("github_sha_json", '{"sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "url": "x"}'),
    ("npmrc_env", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}"),
    ("css_at_rules", "@font-face { font-family: x; } @keyframes spin { to { rotate: 1turn; } }"),
    ("handles", "Thanks @octocat and @jack for the review!"),
    ("maven_coord", "implementation 'org.apache.commons:commons-lang3:3.12.0'"),
    ("pg_cast", "SELECT '2023-01-01'::date, 2023::text, now()::timestamptz;"),
    ("supported_versions", 'SUPPORTED = ["12.4.22.1", "12.4.23.7"]'),
    ("file_version", "FileVersion: 10.0.19041.1"),
    ("user_agent", "Mozilla/5.0 (X11) Chrome/116.0.5845.96 Safari/537.36"),
    ("dates", "released 2023.10.05, patched 05.10.2023 12:30"),
    ("ipv6_prefix_only", "route -A inet6 add 2a01:4f8::/32"),
    ("example_email_upper", "Contact: SUPPORT@EXAMPLE.COM"),
    ("uuid_v4_secret_name", 'client_secret_id = "9b2f3c1e-7d4a-4e5f-8a6b-1c2d3e4f5a6b"'),
    ("hash_in_comment", "# md5: 9e107d9d372bb6826bd81d3542a419d6\napi_key = get_key()"),
)


def _build_negatives(seed: int = 7) -> tuple[Sample, ...]:
    g = _Gen(seed)
    out = [Sample(name, "mixed", text + "\n") for name, text in _NEGATIVE_SNIPPETS]
    # Generated variations: the same traps with other numbers.
    for i in range(12):
        out.append(Sample(f"gen_version_{i}", "python", f'__version__ = "{g.version()}"\n'))
        out.append(Sample(f"gen_private_{i}", "yaml", f"host: {g.private_ip()}\n"))
        out.append(Sample(f"gen_commit_{i}", "python", f'commit_sha = "{g.hexkey(40)}"\n'))
        out.append(Sample(f"gen_uuid_{i}", "json", f'{{"auth_token": "{g.uuid()}"}}\n'))
    return tuple(out)


NEGATIVES = _build_negatives()
