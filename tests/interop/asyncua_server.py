"""An asyncua 2.1 OPC UA server as its own process, standing in for a CNC controller nobody on this
team wrote, so a test can kill it like a machine losing power.

usage: python asyncua_server.py PORT SPEED CERT_DIR

Endpoint opc.tcp://127.0.0.1:PORT/cnc with security None and Basic256Sha256 (Sign and
SignAndEncrypt); users anonymous and operator/operator-secret. Namespace
urn:ironbridge:test:cnc (index 2) holds a Machine object:

  ns=2;s=Machine.Spindle.Speed   Double, starts at SPEED, writable (the test drives it)
  Feed (browse path /0:Objects/2:Machine/2:Feed)   Int32 80
  ns=2;s=Machine.Override        UInt16 100, writable
  ns=2;s=Machine.Program         String "O1000"
  ns=2;s=Machine.Offsets         Double[3]
  ns=2;s=Machine.Tools.T1.Wear   Float 0.25 (a folder Tools with an object T1: nesting, for
                                 discovery)
  ns=2;s=Machine.Reset           a method (discovery skips it)
"""

import asyncio
import pathlib
import sys

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID


class Operators(UserManager):
    """Anonymous access and one username with its password."""

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None:
            return User(role=UserRole.User)
        if username == "operator" and password == "operator-secret":
            return User(role=UserRole.User, name=username)
        return None


async def main():
    port, speed, cert_dir = int(sys.argv[1]), float(sys.argv[2]), pathlib.Path(sys.argv[3])
    cert_dir.mkdir(parents=True, exist_ok=True)
    # asyncua writes the key as PEM and the certificate as DER.
    key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        "urn:ironbridge:test:cnc:server",
        "localhost",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "asyncua CNC"},
    )
    server = Server(user_manager=Operators())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/cnc")
    server.set_server_name("asyncua CNC")
    await server.set_application_uri("urn:ironbridge:test:cnc:server")
    server.set_security_policy([
        ua.SecurityPolicyType.NoSecurity,
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ])
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    ns = await server.register_namespace("urn:ironbridge:test:cnc")
    machine = await server.nodes.objects.add_object(ua.NodeId("Machine", ns), ua.QualifiedName("Machine", ns))
    speed_node = await machine.add_variable(ua.NodeId("Machine.Spindle.Speed", ns), ua.QualifiedName("SpindleSpeed", ns), speed)
    await speed_node.set_writable()
    await machine.add_variable(ua.NodeId("Machine.Feed", ns), ua.QualifiedName("Feed", ns), ua.Variant(80, ua.VariantType.Int32))
    override = await machine.add_variable(ua.NodeId("Machine.Override", ns), ua.QualifiedName("Override", ns), ua.Variant(100, ua.VariantType.UInt16))
    await override.set_writable()
    await machine.add_variable(ua.NodeId("Machine.Program", ns), ua.QualifiedName("Program", ns), "O1000")
    await machine.add_variable(ua.NodeId("Machine.Offsets", ns), ua.QualifiedName("Offsets", ns), [0.5, 1.5, 2.5])
    tools = await machine.add_folder(ua.NodeId("Machine.Tools", ns), ua.QualifiedName("Tools", ns))
    tool = await tools.add_object(ua.NodeId("Machine.Tools.T1", ns), ua.QualifiedName("T1", ns))
    await tool.add_variable(ua.NodeId("Machine.Tools.T1.Wear", ns), ua.QualifiedName("Wear", ns),
                            ua.Variant(0.25, ua.VariantType.Float))
    await machine.add_method(ua.NodeId("Machine.Reset", ns), ua.QualifiedName("Reset", ns),
                             lambda parent: [], [], [])
    async with server:
        print("ready", flush=True)
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
