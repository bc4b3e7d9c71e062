import 'uplot/dist/uPlot.min.css';
import './styles.css';
import { render } from 'preact';
import { App } from './app';

// The page's only script, loaded from /admin/assets under a CSP without 'unsafe-inline'.
const root = document.getElementById('app');
if (root) render(<App />, root);
