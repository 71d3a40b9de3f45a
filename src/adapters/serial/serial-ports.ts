/**
 * The serialport adapter: the only importer of the serialport driver. Opens
 * ports, frames what they receive, and maps driver failures to LinesignError.
 * The driver (and its native binding) is loaded when a port is first opened
 * or listed, so the station's other commands start without it.
 */
import { existsSync } from "node:fs";
import type { SerialPort } from "serialport";
import { LinesignError } from "../../domain/errors.js";
import type { DecodeEvent } from "../../domain/serial/frame.js";
import type { SerialLink, SerialPortInfo, SerialPorts } from "../../domain/ports.js";
import type { Logger } from "../../domain/logger.js";
import { FrameStream } from "./frame-stream.js";

let driver: Promise<typeof import("serialport")> | null = null;
const serialport = () => (driver ??= import("serialport"));

/** The most a port may have waiting to go out: several times the largest exchange. */
export const WRITE_BACKLOG_BYTES = 256 * 1024;

class SerialPortLink implements SerialLink {
  private readonly frames = new FrameStream();
  private dataListeners: ((bytes: number, events: DecodeEvent[]) => void)[] = [];
  private closeListeners: ((lost: boolean) => void)[] = [];
  private closed = false;
  private closing = false;

  constructor(
    readonly path: string,
    private readonly port: SerialPort,
    logger: Logger,
  ) {
    // Every chunk counts as a sign of life; the frame stream turns bytes into frames.
    port.on("data", (chunk: Buffer) => {
      for (const l of this.dataListeners) l(chunk.length, []);
    });
    this.frames.on("data", (e: DecodeEvent) => {
      for (const l of this.dataListeners) l(0, [e]);
    });
    port.pipe(this.frames);
    port.on("error", (err: Error) => logger.warn({ port: path, err }, "serial port error"));
    // Any close the station did not ask for is a lost port: a pulled USB adapter shows up as
    // a disconnect, or as EIO on the next read or write followed by a close.
    port.on("close", () => {
      if (this.closed) return;
      this.closed = true;
      for (const l of this.closeListeners) l(!this.closing);
    });
  }

  /**
   * Bytes handed to the driver and not yet written out. A device that does not
   * read its UART (broken, or flooding the station with requests) cannot make
   * this grow past WRITE_BACKLOG_BYTES: further writes are refused until it reads.
   */
  private waiting = 0;

  write(bytes: Uint8Array): Promise<void> {
    if (this.closed || !this.port.isOpen) return Promise.resolve();
    if (this.waiting + bytes.length > WRITE_BACKLOG_BYTES)
      return Promise.reject(
        new LinesignError(
          "SERIAL_PROTOCOL",
          `Port ${this.path}: the device does not read what the station sends (${this.waiting} bytes are waiting). ` +
            "Check the device and its cable; the station sends it nothing more until it reads.",
          { details: { port: this.path, waiting: this.waiting } },
        ),
      );
    this.waiting += bytes.length;
    // Resolves once the driver has written the bytes to the port (not on tcdrain: a device that
    // never reads would keep one of libuv's few worker threads for ever, and every port with it).
    return new Promise<void>((resolve, reject) => {
      this.port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), (err) => {
        this.waiting -= bytes.length;
        if (err) reject(err);
        else resolve();
      });
    });
  }

  onData(listener: (bytes: number, events: DecodeEvent[]) => void): void {
    this.dataListeners.push(listener);
  }

  onClose(listener: (lost: boolean) => void): void {
    this.closeListeners.push(listener);
  }

  close(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      if (!this.port.isOpen) return resolve();
      this.port.close(() => resolve());
    });
  }
}

export class NodeSerialPorts implements SerialPorts {
  constructor(private readonly logger: Logger) {}

  exists(path: string): boolean {
    return existsSync(path);
  }

  async open(path: string, baudRate: number): Promise<SerialLink> {
    const { SerialPort } = await serialport();
    return new Promise((resolve, reject) => {
      if (!existsSync(path)) {
        return reject(
          new LinesignError(
            "SERIAL_PORT_NOT_FOUND",
            `Serial port ${path} does not exist. Check the cable and the port's name ("linesign line ports" lists them where the system can).`,
            { details: { port: path } },
          ),
        );
      }
      const port = new SerialPort({ path, baudRate, autoOpen: false });
      port.open((err) => {
        if (err) {
          return reject(
            new LinesignError(
              "SERIAL_PORT_UNAVAILABLE",
              `Serial port ${path} cannot be opened: ${err.message}. Check that no other program uses it and that the station may open it.`,
              { cause: err, details: { port: path } },
            ),
          );
        }
        resolve(new SerialPortLink(path, port, this.logger));
      });
    });
  }

  async list(): Promise<SerialPortInfo[]> {
    try {
      const { SerialPort } = await serialport();
      const found = await SerialPort.list();
      return found.map((p) => ({
        path: p.path,
        ...(p.manufacturer ? { manufacturer: p.manufacturer } : {}),
        ...(p.serialNumber ? { serialNumber: p.serialNumber } : {}),
        ...(p.vendorId ? { vendorId: p.vendorId } : {}),
        ...(p.productId ? { productId: p.productId } : {}),
      }));
    } catch (cause) {
      throw new LinesignError(
        "PORT_DISCOVERY_UNAVAILABLE",
        'This system cannot list its serial ports (on Linux discovery needs udev\'s udevadm). Name the ports instead: --port /dev/ttyUSB0, or "line.ports" in station.json.',
        { cause },
      );
    }
  }
}
