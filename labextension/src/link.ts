/**
 * The connection to nbtune in a notebook's kernel: a comm to the `nbtune` target that
 * `%load_ext nbtune` registers (see nbtune/lab/_comm.py). It answers requests and pushes the
 * searches of the kernel session. Without nbtune in the kernel the comm is refused and
 * the link says so ('absent'); it tries again after a cell that mentions nbtune has run,
 * and after a kernel restart.
 */

import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { IAnnotation } from './annotations';

/** The comm target nbtune registers in the kernel. */
export const TARGET = 'nbtune';

/** Whether executed code may have loaded nbtune (worth trying to connect again). */
const MENTIONS_NBTUNE = /nbtune|%%tune|%tune_template/;

/** Where the link stands. */
export type LinkState = 'no-kernel' | 'connecting' | 'ready' | 'absent';

/** One search as the kernel reports it (see `_Search.snapshot` in nbtune/lab/_comm.py). */
export interface ISearch {
  id: number;
  name: string;
  out: string;
  metric: string;
  mode: 'min' | 'max';
  status: string;
  finished: boolean;
  done: number;
  total: number;
  running: number;
  ok: number;
  pruned?: number; // stopped early by --prune (kernels before pruning do not send it)
  failed: number;
  cancelled: number;
  best: number | null;
  best_params: { [name: string]: unknown };
  backend: string;
  parallelism: number;
  mlflow_url: string | null;
  best_mlflow_url: string | null;
  started: number;
  elapsed: number;
}

/** A template the kernel's nbtune provides. */
export interface ITemplate {
  name: string;
  description: string;
  text: string;
}

/** The kernel's reading of a cell's annotations. */
export interface IKernelReading {
  annotations: (IAnnotation & { message?: string })[];
  cell_error: string | null;
}

interface IPending {
  resolve: (value: JSONObject) => void;
  reject: (reason: Error) => void;
}

/** The link between one notebook session and nbtune in its kernel. */
export class NbtuneLink implements IDisposable {
  constructor(private readonly _context: ISessionContext) {
    _context.kernelChanged.connect(this._onKernelChanged, this);
    _context.statusChanged.connect(this._onStatus, this);
    _context.iopubMessage.connect(this._onIOPub, this);
    this._onKernelChanged();
  }

  /** Emitted when the state or the searches change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Where the link stands. */
  get state(): LinkState {
    return this._state;
  }

  /** This kernel session's searches, oldest first. */
  get searches(): ISearch[] {
    return [...this._searches.values()];
  }

  /** The notebook session this link serves. */
  get sessionContext(): ISessionContext {
    return this._context;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Open the comm to nbtune, unless it is open or being opened. */
  connect(): void {
    const kernel = this._context.session?.kernel;
    if (this._disposed || this._comm !== null || !kernel) {
      return;
    }
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(TARGET);
    } catch {
      this._setState('absent');
      return;
    }
    this._comm = comm;
    this._setState('connecting');
    comm.onMsg = msg => this._onMessage(msg.content.data as JSONObject);
    comm.onClose = () => this._closed(comm);
    try {
      comm.open({ request: 'hello' });
    } catch {
      this._closed(comm);
    }
  }

  /** Wait until the link is ready (true) or known to be absent, or `timeout` ms pass (false). */
  whenSettled(timeout: number): Promise<boolean> {
    if (this._state === 'connecting') {
      return new Promise(resolve => {
        const done = (): void => {
          if (this._state !== 'connecting') {
            clearTimeout(timer);
            this._changed.disconnect(done);
            resolve(this._state === 'ready');
          }
        };
        const timer = setTimeout(() => {
          this._changed.disconnect(done);
          resolve(false);
        }, timeout);
        this._changed.connect(done);
      });
    }
    return Promise.resolve(this._state === 'ready');
  }

  /** Wait until the link becomes ready, for at most `timeout` ms. */
  whenReady(timeout: number): Promise<boolean> {
    if (this._state === 'ready') {
      return Promise.resolve(true);
    }
    return new Promise(resolve => {
      const done = (): void => {
        if (this._state === 'ready') {
          clearTimeout(timer);
          this._changed.disconnect(done);
          resolve(true);
        }
      };
      const timer = setTimeout(() => {
        this._changed.disconnect(done);
        resolve(false);
      }, timeout);
      this._changed.connect(done);
    });
  }

  /** Ask the kernel's nbtune something; rejects when nbtune is not there. */
  request<T>(request: string, payload: JSONObject = {}): Promise<T> {
    const comm = this._comm;
    if (this._state !== 'ready' || comm === null) {
      return Promise.reject(new Error('nbtune is not loaded in the kernel'));
    }
    const id = ++this._lastId;
    return new Promise<T>((resolve, reject) => {
      this._pending.set(id, {
        resolve: value => resolve(value as unknown as T),
        reject
      });
      comm.send({ ...payload, request, id });
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._reset('no-kernel');
    Signal.clearData(this);
  }

  private _onMessage(data: JSONObject): void {
    if (data.event === 'search') {
      const search = data.search as unknown as ISearch;
      this._searches.set(search.id, search);
      this._changed.emit();
      return;
    }
    if (data.reply === 'hello' && (data.id ?? null) === null) {
      this._searches.clear();
      for (const search of (data.searches ?? []) as unknown as ISearch[]) {
        this._searches.set(search.id, search);
      }
      this._setState('ready');
      return;
    }
    const pending = this._pending.get(data.id as number);
    if (pending) {
      this._pending.delete(data.id as number);
      if (typeof data.error === 'string') {
        pending.reject(new Error(data.error));
      } else {
        pending.resolve(data);
      }
    }
  }

  private _closed(comm: Kernel.IComm): void {
    if (this._comm === comm) {
      this._comm = null;
      this._failPending();
      this._setState('absent');
    }
  }

  private _onKernelChanged(): void {
    this._reset(this._context.session?.kernel ? 'absent' : 'no-kernel');
    this._tryWhenIdle = true;
    if (this._context.session?.kernel?.status === 'idle') {
      this._tryWhenIdle = false;
      this.connect();
    }
  }

  private _onStatus(_: ISessionContext, status: Kernel.Status): void {
    if (
      status === 'restarting' ||
      status === 'autorestarting' ||
      status === 'dead'
    ) {
      this._reset('absent'); // the restarted kernel has a fresh nbtune, if any
      this._tryWhenIdle = true;
    } else if (
      status === 'idle' &&
      this._tryWhenIdle &&
      this._state !== 'ready'
    ) {
      this._tryWhenIdle = false;
      this.connect();
    }
  }

  private _onIOPub(_: ISessionContext, msg: KernelMessage.IMessage): void {
    if (this._state === 'ready' || msg.header.msg_type !== 'execute_input') {
      return;
    }
    const code = (msg as KernelMessage.IExecuteInputMsg).content.code;
    if (MENTIONS_NBTUNE.test(code)) {
      this._tryWhenIdle = true;
    }
  }

  private _reset(state: LinkState): void {
    const comm = this._comm;
    this._comm = null;
    if (comm !== null && !comm.isDisposed) {
      comm.dispose();
    }
    this._failPending();
    this._searches.clear();
    this._setState(state);
  }

  private _failPending(): void {
    for (const pending of this._pending.values()) {
      pending.reject(new Error('the connection to nbtune was closed'));
    }
    this._pending.clear();
  }

  private _setState(state: LinkState): void {
    this._state = state;
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _comm: Kernel.IComm | null = null;
  private _disposed = false;
  private _lastId = 0;
  private _pending = new Map<number, IPending>();
  private _searches = new Map<number, ISearch>();
  private _state: LinkState = 'no-kernel';
  private _tryWhenIdle = false;
}

/** One link per notebook session, created on demand and disposed with the session. */
export class Links {
  /** The link of a session context. */
  get(context: ISessionContext): NbtuneLink {
    let link = this._links.get(context);
    if (link === undefined) {
      link = new NbtuneLink(context);
      this._links.set(context, link);
      context.disposed.connect(() => {
        this._links.get(context)?.dispose();
        this._links.delete(context);
      });
    }
    return link;
  }

  private _links = new Map<ISessionContext, NbtuneLink>();
}
