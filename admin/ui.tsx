import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload(): void;
}

/** Runs `load` when `deps` change (and on reload()); keeps the last data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  // The caller lists what `load` depends on, as with useEffect.
  useEffect(() => {
    let live = true;
    setLoading(true);
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(undefined);
        setLoading(false);
      },
      (err: unknown) => {
        if (!live) return;
        setError(err as Error);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/** An error as text, with the bridge's code when there is one. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as Error;
  const code = e instanceof ApiError ? ` (${e.code})` : '';
  return (
    <p class="error" role="alert">
      {e.message}
      {code}
    </p>
  );
}

export function Section({
  title,
  children,
  actions,
}: {
  title: string;
  children: ComponentChildren;
  actions?: ComponentChildren;
}) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{title}</h2>
        {actions ? <div class="actions">{actions}</div> : null}
      </header>
      {children}
    </section>
  );
}

/** Spend against a limit; over the limit turns red. */
export function Bar({ value, max, label }: { value: number; max: number; label: string }) {
  const over = max > 0 && value >= max;
  return (
    <progress
      class={over ? 'bar over' : 'bar'}
      max={max > 0 ? max : 1}
      value={Math.min(value, max > 0 ? max : 1)}
      aria-label={label}
    >
      {label}
    </progress>
  );
}

/** A modal dialog (the native element: focus trap and Escape for free). */
export function Dialog({
  open,
  onClose,
  title,
  children,
}: {
  open: boolean;
  onClose(): void;
  title: string;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-label={title}>
      <h2>{title}</h2>
      {open ? children : null}
    </dialog>
  );
}

/** A text field bound to a string state. */
export function Field({
  label,
  value,
  onInput,
  placeholder,
  type = 'text',
  name,
  required,
}: {
  label: string;
  value: string;
  onInput(v: string): void;
  placeholder?: string;
  type?: 'text' | 'email' | 'number' | 'password';
  name: string;
  required?: boolean;
}) {
  return (
    <label class="field">
      <span>{label}</span>
      <input
        name={name}
        // Preact's input types are a union keyed on `type`; these three share every attribute used here.
        type={type as 'text'}
        value={value}
        placeholder={placeholder}
        required={required}
        step={type === 'number' ? 'any' : undefined}
        onInput={(e) => onInput((e.currentTarget as HTMLInputElement).value)}
      />
    </label>
  );
}

export function Select<T extends string>({
  label,
  value,
  options,
  onChange,
  name,
}: {
  label: string;
  value: T;
  options: readonly T[];
  onChange(v: T): void;
  name: string;
}) {
  return (
    <label class="field">
      <span>{label}</span>
      <select
        name={name}
        value={value}
        onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value as T)}
      >
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}
